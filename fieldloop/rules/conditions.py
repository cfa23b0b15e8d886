"""The closed condition language: ``all`` / ``any`` / ``not`` over ``field: {op: value}``.

Parsed from the YAML tree into small frozen nodes, every problem reported at its path so the
loader can give file:line:col. No expressions, no code: a condition can only name a registered
field and one of the operators below. Evaluation is pure (``holds``).

Semantics: text and keyword comparisons ignore case; a field the ticket does not have fails
every test except ``exists: false``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fieldloop.rules.fields import FIELDS, Field, FieldType, did_you_mean

Path = tuple[str | int, ...]

OPS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between", "exists",
       "contains_any", "matches")  # fmt: skip

_OPS_BY_TYPE: dict[FieldType, frozenset[str]] = {
    FieldType.text: frozenset({"eq", "ne", "in", "not_in", "exists", "contains_any", "matches"}),
    FieldType.keyword: frozenset({"eq", "ne", "in", "not_in", "exists", "contains_any", "matches"}),
    FieldType.number: frozenset(
        {"eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between", "exists"}
    ),
    FieldType.keywords: frozenset({"contains_any", "exists"}),
    FieldType.boolean: frozenset({"eq", "ne", "exists"}),
}
_OPS_BY_TYPE[FieldType.integer] = _OPS_BY_TYPE[FieldType.number]

MAX_PATTERN = 200  # a regular expression longer than this is refused (and so is nesting)
# a repeated group that itself repeats or alternates: (a+)+, (x*)*, (a|a)* take exponential time
_NESTED_QUANTIFIER = re.compile(r"\([^)]*[+*}|][^)]*\)[+*{]")


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str


class ConditionError(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, p.path))}: {p.message}" for p in problems))


@dataclass(frozen=True)
class Always:
    """No ``when``: the rule applies to every ticket (a catch-all)."""


@dataclass(frozen=True)
class Test:
    __test__ = False  # not a pytest test class, whatever module imports it

    field: str
    op: str
    value: Any  # normalised: lowered strings, tuples for lists, compiled pattern source


@dataclass(frozen=True)
class All:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    child: Node


Node = Always | Test | All | AnyOf | Not


# --- parsing ------------------------------------------------------------------------------


def parse_condition(data: Any, path: Path = ("when",)) -> Node:
    """The node for ``data`` (None = Always), or ConditionError listing every problem."""
    problems: list[Problem] = []
    node = _parse(data, path, problems) if data is not None else Always()
    if problems:
        raise ConditionError(problems)
    return node


def _parse(data: Any, path: Path, problems: list[Problem]) -> Node:
    if not isinstance(data, Mapping) or len(data) != 1:
        problems.append(
            Problem(
                path,
                "a condition is one mapping with exactly one key: all, any, not, or a field "
                "(e.g. `text: {contains_any: [漏水, leak]}`)",
            )
        )
        return Always()
    ((key, value),) = data.items()
    key = str(key)
    here = (*path, key)
    if key in ("all", "any"):
        if not isinstance(value, Sequence) or isinstance(value, str) or not value:
            problems.append(Problem(here, f"{key}: needs a non-empty list of conditions"))
            return Always()
        children = tuple(_parse(c, (*here, i), problems) for i, c in enumerate(value))
        return All(children) if key == "all" else AnyOf(children)
    if key == "not":
        return Not(_parse(value, here, problems))
    field = FIELDS.get(key)
    if field is None:
        problems.append(
            Problem(
                here,
                f"unknown field {key!r}{did_you_mean(key, list(FIELDS))} "
                "(`fieldloop rules fields` lists them)",
            )
        )
        return Always()
    if not isinstance(value, Mapping) or len(value) != 1:
        problems.append(
            Problem(here, f"{key}: needs exactly one operator, e.g. `{key}: {{eq: ...}}`")
        )
        return Always()
    ((op, operand),) = value.items()
    op = str(op)
    allowed = _OPS_BY_TYPE[field.type]
    if op not in OPS:
        problems.append(
            Problem(
                (*here, op),
                f"unknown operator {op!r}{did_you_mean(op, OPS)}; use one of "
                + ", ".join(sorted(allowed)),
            )
        )
        return Always()
    if op not in allowed:
        problems.append(
            Problem(
                (*here, op),
                f"{op} does not apply to {key} ({field.type.value}); use one of "
                + ", ".join(sorted(allowed)),
            )
        )
        return Always()
    try:
        return Test(key, op, _operand(field, op, operand))
    except ValueError as exc:
        problems.append(Problem((*here, op), str(exc)))
        return Always()


def _scalar(field: Field, value: Any) -> Any:
    if field.type in (FieldType.number, FieldType.integer):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{field.name} is a number; {value!r} is not")
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        return value
    if field.type is FieldType.boolean:
        if not isinstance(value, bool):
            raise ValueError(f"{field.name} is true or false; {value!r} is not")
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field.name} takes text; {value!r} is not")
    if field.values and value.lower() not in field.values:
        raise ValueError(
            f"{value!r} is not a {field.name}{did_you_mean(value, field.values)}; one of "
            + ", ".join(field.values)
        )
    return value.lower()


def _list(field: Field, value: Any, op: str) -> tuple[Any, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise ValueError(f"{op} needs a non-empty list, e.g. [a, b]")
    return tuple(_scalar(field, v) for v in value)


def _operand(field: Field, op: str, value: Any) -> Any:
    if op == "exists":
        if not isinstance(value, bool):
            raise ValueError("exists takes true or false")
        return value
    if op in ("in", "not_in"):
        return _list(field, value, op)
    if op == "contains_any":
        if not isinstance(value, Sequence) or isinstance(value, str) or not value:
            raise ValueError("contains_any needs a non-empty list of words, e.g. [漏水, leak]")
        words = []
        for v in value:
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"contains_any takes words; {v!r} is not one")
            words.append(v.strip().lower())
        return tuple(words)
    if op == "matches":
        if not isinstance(value, str) or not value:
            raise ValueError("matches takes a regular expression as text")
        if len(value) > MAX_PATTERN:
            raise ValueError(f"the pattern is over {MAX_PATTERN} characters; split it")
        if _NESTED_QUANTIFIER.search(value) or re.search(r"\\[1-9]|\(\?<?[=!]", value):
            raise ValueError(
                "nested repetition, back-references and look-arounds are refused (they can "
                "take exponential time); use contains_any or a simpler pattern"
            )
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return value
    if op == "between":
        if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
            raise ValueError("between takes [low, high]")
        lo, hi = (_scalar(field, v) for v in value)
        if lo > hi:
            raise ValueError(f"between [{lo}, {hi}]: low is above high")
        return (lo, hi)
    if op in ("gt", "gte", "lt", "lte"):
        return _scalar(field, value)
    return _scalar(field, value)  # eq, ne


# --- evaluation -----------------------------------------------------------------------------

_PATTERNS: dict[str, re.Pattern[str]] = {}


def _pattern(source: str) -> re.Pattern[str]:
    p = _PATTERNS.get(source)
    if p is None:
        p = _PATTERNS[source] = re.compile(source, re.IGNORECASE)
    return p


def holds(node: Node, facts: Mapping[str, Any]) -> bool:
    """Whether ``node`` holds for ``facts`` (field name -> value; see ``normalise_facts``)."""
    if isinstance(node, Test):
        return _test(node, facts.get(node.field))
    if isinstance(node, All):
        return all(holds(c, facts) for c in node.children)
    if isinstance(node, AnyOf):
        return any(holds(c, facts) for c in node.children)
    if isinstance(node, Not):
        return not holds(node.child, facts)
    return True  # Always


def _test(t: Test, value: Any) -> bool:
    if t.op == "exists":
        return (value is not None) is t.value
    if value is None:
        return False
    op, want = t.op, t.value
    if op == "eq":
        return value == want
    if op == "ne":
        return value != want
    if op == "in":
        return value in want
    if op == "not_in":
        return value not in want
    if op == "gt":
        return value > want
    if op == "gte":
        return value >= want
    if op == "lt":
        return value < want
    if op == "lte":
        return value <= want
    if op == "between":
        return want[0] <= value <= want[1]
    if op == "contains_any":  # substring of text, or member of a list: `in` does both
        return any(w in value for w in want)
    if op == "matches":
        return _pattern(want).search(value) is not None
    raise AssertionError(op)


def normalise_facts(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Facts as conditions compare them: text lowered (not casefolded, so a pattern and the
    text it searches agree: ``straße`` stays ``straße``), lists as tuples, ``text`` built from
    the title and description when not given. Unknown names and values of the wrong type are
    refused by name, so every engine sees the same input."""
    out: dict[str, Any] = {}
    for name, value in raw.items():
        field = FIELDS.get(name)
        if field is None:
            raise ValueError(f"unknown field {name!r}{did_you_mean(name, list(FIELDS))}")
        if value is None:
            continue
        if field.type in (FieldType.text, FieldType.keyword):
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValueError(f"{name} is text; {value!r} is not")
            out[name] = str(value).lower()
        elif field.type is FieldType.keywords:
            if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
                raise ValueError(f"{name} is a list of words, e.g. [hazard]; {value!r} is not")
            out[name] = tuple(str(v).lower() for v in value)
        elif field.type is FieldType.boolean:
            if not isinstance(value, bool):
                raise ValueError(f"{name} is true or false; {value!r} is not")
            out[name] = value
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} is a number; {value!r} is not")
            if not math.isfinite(value):
                raise ValueError(f"{name}: {value!r} is not a finite number")
            if field.type is FieldType.integer and value != int(value):
                raise ValueError(f"{name} is a whole number; {value!r} is not")
            out[name] = value
    if "text" not in out and ("title" in out or "description" in out):
        out["text"] = "\n".join(out[k] for k in ("title", "description") if k in out)
    return out


def fields_used(node: Node) -> set[str]:
    if isinstance(node, Test):
        return {node.field}
    if isinstance(node, All | AnyOf):
        return set().union(*(fields_used(c) for c in node.children))
    if isinstance(node, Not):
        return fields_used(node.child)
    return set()
