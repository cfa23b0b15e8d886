"""Strict YAML loading: every error names file:line:col, the key, the bad value and what is allowed.

Files are parsed with ruamel.yaml (which keeps positions and rejects duplicate keys), then validated
by one pydantic model; pydantic's error locations are mapped back to the YAML node's position.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

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


def _allowed_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """Field names (aliases) allowed at ``loc``, for 'did you mean'."""
    current: Any = model
    for key in loc:
        if isinstance(key, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields:
            return []
        match = next((f for n, f in fields.items() if (f.alias or n) == key), None)
        if match is None:
            return []
        current = _inner_model(match.annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", {})
    return [f.alias or n for n, f in fields.items()]


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _describe(err: dict[str, Any], model: type[BaseModel]) -> str:
    loc = [x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-"))]
    where = ".".join(str(x) for x in loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(model, loc[:-1])
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {key!r}{hint} (allowed: {', '.join(sorted(allowed))})"
    if kind == "missing":
        return f"{where}: required key is missing; add it"
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
            loc = [x for x in err["loc"] if not (isinstance(x, str) and "[" in x)]
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, LocatedValueError):
                loc += list(cause.loc)
                err = {**err, "loc": tuple(loc)}
            line, col = position(data, loc)
            problems.append(FileProblem(str(path), line, col, _describe(err, model)))
        raise FileError(problems) from None


def load(path: Path, model: type[M]) -> M:
    return validate(path, parse_yaml(path), model)
