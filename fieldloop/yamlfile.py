"""Strict YAML loading: every error names file:line:col, the key, the bad value and what is allowed.

Files are parsed with ruamel.yaml (which keeps positions and rejects duplicate keys), then validated
by one pydantic model; pydantic's error locations are mapped back to the YAML node's position.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class FileProblem:
    path: str
    line: int  # 1-based
    col: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"


class LocatedValueError(ValueError):
    """Raised by a model validator about one element (a repeated id, an overlap), so the error
    points at that element's line, not at the top of the file."""

    def __init__(self, message: str, loc: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.loc = loc


def repeated(values: Sequence[object]) -> tuple[int, object] | None:
    """Index and value of the first element equal to an earlier one."""
    seen: set[object] = set()
    for i, v in enumerate(values):
        if v in seen:
            return i, v
        seen.add(v)
    return None


def require_unique(values: Sequence[object], what: str, key: str, list_name: str) -> None:
    """Raise at the second of two equal values: ``what`` {value} is used twice."""
    dup = repeated(values)
    if dup:
        raise LocatedValueError(
            f"{what} {dup[1]!r} is used twice; {what}s must be unique", (list_name, dup[0], key)
        )


class FileError(Exception):
    """A configuration file is wrong. The message lists every problem as file:line:col."""

    def __init__(self, problems: Sequence[FileProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    return y


def parse_yaml(path: Path, text: str | None = None) -> Any:
    """Parse a YAML file keeping positions; a syntax error becomes a FileError at its mark."""
    try:
        if text is None:
            text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FileError([FileProblem(str(path), 1, 1, f"cannot read the file: {exc}")]) from exc
    try:
        return _yaml().load(text)
    except ReaderError as exc:  # a character YAML does not allow (a control character)
        before = text[: exc.position]
        line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        raise FileError(
            [
                FileProblem(
                    str(path),
                    line,
                    col,
                    f"invalid YAML: character U+{int(exc.character):04X} is not allowed here; "
                    "remove it",
                )
            ]
        ) from exc
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        raise FileError(
            [FileProblem(str(path), line, col, f"invalid YAML: {what}; fix the syntax here")]
        ) from exc


def position(data: Any, loc: Iterable[str | int]) -> tuple[int, int]:
    """Line and column (1-based) of the deepest node along ``loc`` that exists in ``data``."""
    line, col = 1, 1
    node = data
    for key in loc:
        if isinstance(node, CommentedMap) and key in node:
            ln, cl = node.lc.key(key)
            line, col = ln + 1, cl + 1
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
            ln, cl = node.lc.item(key)
            line, col = ln + 1, cl + 1
            node = node[key]
        else:
            if isinstance(node, CommentedMap) and node.lc.line is not None and line == 1:
                line, col = node.lc.line + 1, node.lc.col + 1
            break
    return line, col


@dataclass(frozen=True)
class _Resolved:
    loc: list[str | int]  # the error's location in the YAML, without union tags
    model: type[BaseModel] | None  # the model whose keys are allowed at the end of ``loc``
    union: tuple[str, dict[str, type[BaseModel]]] | None  # an unresolved tagged union there


def _resolve(model: type[BaseModel], loc: Sequence[str | int]) -> _Resolved:
    """Walk a pydantic error location through ``model``. A discriminated union (a list of rules
    told apart by ``type``, say) puts the member's tag into the location; it is not a YAML key,
    so it is dropped, and the tagged member is the model that says which keys are allowed."""
    out: list[str | int] = []
    current: type[BaseModel] | None = model
    union: tuple[str, dict[str, type[BaseModel]]] | None = None
    values: Any = None  # a mapping's value type: the next key is a name of the user's, not a field
    for key in loc:
        if union is not None and isinstance(key, str) and key in union[1]:
            current, union = union[1][key], None
            continue
        out.append(key)
        if isinstance(key, int):
            continue
        if values is not None:
            annotation, values = values, None
        else:
            fields = getattr(current, "model_fields", None) or {}
            match = next((f for n, f in fields.items() if (f.alias or n) == key), None)
            if match is None:
                current, union = None, None
                continue
            annotation = match.annotation
            if get_origin(annotation) is dict:
                values, current, union = get_args(annotation)[1], None, None
                continue
            union = _tagged_union(annotation, match.discriminator)
            current = None if union else _inner_model(annotation)
            continue
        if get_origin(annotation) is dict:
            values, current, union = get_args(annotation)[1], None, None
            continue
        union = _tagged_union(annotation)
        current = None if union else _inner_model(annotation)
    return _Resolved(out, current, union)


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _tagged_union(
    annotation: Any, discriminator: object = None
) -> tuple[str, dict[str, type[BaseModel]]] | None:
    """(key, tag -> member) of a union told apart by a key, found anywhere in ``annotation``
    (e.g. ``list[Annotated[A | B, Field(discriminator="type")]]``); tags are the members'
    ``Literal`` values of that key."""
    if get_origin(annotation) is Annotated:
        annotation, *meta = get_args(annotation)
        for m in meta:
            if isinstance(getattr(m, "discriminator", None), str):
                discriminator = m.discriminator
    if isinstance(discriminator, str):
        members: dict[str, type[BaseModel]] = {}
        for member in get_args(annotation):
            field = getattr(member, "model_fields", {}).get(discriminator)
            if field is not None and get_origin(field.annotation) is Literal:
                members |= {str(tag): member for tag in get_args(field.annotation)}
        if members:
            return discriminator, members
    for arg in get_args(annotation):
        found = _tagged_union(arg)
        if found is not None:
            return found
    return None


def _describe(err: dict[str, Any], at: _Resolved, allowed_here: _Resolved | None) -> str:
    loc = at.loc
    where = ".".join(str(x) for x in loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = allowed_here.model if allowed_here else None
        allowed = [f.alias or n for n, f in getattr(model, "model_fields", {}).items()]
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {key!r}{hint} (allowed: {', '.join(sorted(allowed))})"
    if kind == "missing":
        return f"{where}: required key is missing; add it"
    if kind == "union_tag_invalid" and at.union is not None:
        tags = sorted(at.union[1])
        got = str((err.get("ctx") or {}).get("tag"))
        close = difflib.get_close_matches(got, tags, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{where}: unknown {at.union[0]} {got!r}{hint} (allowed: {', '.join(tags)})"
    value = err.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict | list) else ""
    msg = err["msg"].removeprefix("Value error, ")
    return f"{where}: {msg}{shown}"


def validate(path: Path, data: Any, model: type[M]) -> M:
    """Validate parsed YAML against ``model``; raise FileError listing every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = list(err["loc"])
            # pydantic's own entries (union members, validators) are not keys of the file; an
            # unknown key is the user's own, whatever it contains, so it is always kept
            keep_last = err["type"] == "extra_forbidden" and loc
            raw = [
                x
                for x in (loc[:-1] if keep_last else loc)
                if not (isinstance(x, str) and ("[" in x or x.startswith("function-")))
            ] + ([loc[-1]] if keep_last else [])
            at = _resolve(model, raw)
            if err["type"] == "union_tag_invalid" and at.union is not None:
                at = _Resolved([*at.loc, at.union[0]], None, at.union)  # point at the tag's key
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, LocatedValueError):
                at = _Resolved([*at.loc, *cause.loc], None, None)
            allowed_here = _resolve(model, raw[:-1]) if err["type"] == "extra_forbidden" else None
            line, col = position(data, at.loc)
            problems.append(FileProblem(str(path), line, col, _describe(err, at, allowed_here)))
        raise FileError(problems) from None


def load(path: Path, model: type[M]) -> M:
    return validate(path, parse_yaml(path), model)
