"""``fieldloop rules check``: everything wrong with a rule file, as file:line:col problems.

In order: the bytes (size, UTF-8), strict YAML (``strict``), the schema and the closed language
(``files.load_ruleset``, or the edge's loader for DetectionRules), then what only the whole file
shows: rules shadowed under first-hit, a missing catch-all, gaps and overlaps in priority bands,
tests whose inputs name unknown fields. A bad file never raises: its problems are returned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from fieldloop.detection import load_detection
from fieldloop.rules.conditions import All, Always, AnyOf, Node, fields_used
from fieldloop.rules.conditions import Test as Leaf
from fieldloop.rules.fields import FIELDS, FieldType, did_you_mean
from fieldloop.rules.files import KINDS, Band, RuleSet, load_ruleset
from fieldloop.rules.strict import read_source, scan
from fieldloop.yamlfile import FileError, FileProblem, parse_yaml, position

DETECTION_KIND = "DetectionRules"


@dataclass
class Loaded:
    """One file after loading: its parsed YAML (for positions) and, for a decision file that
    loaded, its RuleSet."""

    path: Path
    problems: list[FileProblem] = field(default_factory=list)
    data: Any = None
    kind: str | None = None
    ruleset: RuleSet | None = None


def load_checked(path: Path) -> Loaded:
    """Read, strictly scan and load ``path``; problems instead of exceptions."""
    out = Loaded(path)
    try:
        raw, text = read_source(path)
    except FileError as exc:
        out.problems += exc.problems
        return out
    strict = scan(path, text)
    out.problems += strict.problems
    if not strict.loadable:  # a tag, an alias, a syntax error...: loading is unsafe or pointless
        return out
    try:
        out.data = parse_yaml(path, text)
    except FileError as exc:
        out.problems += exc.problems
        return out
    kind = out.data.get("kind") if isinstance(out.data, Mapping) else None
    if kind == DETECTION_KIND:
        out.kind = kind
        try:
            load_detection(path)  # the edge's own loader, so check gives the edge's verdict
        except FileError as exc:
            out.problems += exc.problems
        except Exception as exc:  # a loader bug: see _loader_bug
            out.problems.append(_loader_bug(path, exc))
        return out
    if kind not in KINDS:
        kinds = [*KINDS, DETECTION_KIND]
        hint = did_you_mean(str(kind), kinds) if kind is not None else ""
        out.problems.append(
            FileProblem(
                str(path), *position(out.data, ["kind"]),
                f"kind: {kind!r} is not a rule file kind{hint}; use one of {', '.join(kinds)}",
            )
        )  # fmt: skip
        return out
    out.kind = str(kind)
    try:
        out.ruleset = load_ruleset(path, text, out.data, raw)
    except FileError as exc:
        out.problems += exc.problems
    except Exception as exc:  # a loader bug: see _loader_bug
        out.problems.append(_loader_bug(path, exc))
    return out


def _loader_bug(path: Path, exc: Exception) -> FileProblem:
    """A loader that raises anything but FileError has a bug; the file is still refused, with a
    problem rather than a traceback, so a check run (or a reload) goes on to the next file."""
    return FileProblem(
        str(path), 1, 1,
        f"the file could not be checked: the loader failed with {type(exc).__name__}: {exc} "
        "(a bug in fieldloop; please report it with this file)",
    )  # fmt: skip


def check_file(path: Path) -> list[FileProblem]:
    """Every problem in one rule file, in file order; an empty list means it is good."""
    return check_and_load(path)[0]


def check_and_load(path: Path) -> tuple[list[FileProblem], RuleSet | None]:
    """``check_file``'s problems and, for a decision file with none, its RuleSet: a file is
    read, scanned and parsed once for both."""
    loaded = load_checked(path)
    problems = list(loaded.problems)
    if loaded.ruleset is not None:
        problems += ruleset_problems(loaded.ruleset, loaded.data)
    problems.sort(key=lambda p: (p.line, p.col))
    return problems, loaded.ruleset if not problems else None


def check_dir(directory: Path) -> dict[Path, list[FileProblem]]:
    """``check_file`` for every ``*.yaml`` in ``directory`` (not its subdirectories)."""
    return {p: check_file(p) for p in sorted(directory.glob("*.yaml")) if p.is_file()}


def ruleset_problems(ruleset: RuleSet, data: Any) -> list[FileProblem]:
    """What only the whole file shows: shadowed rules and the catch-all (first-hit), band
    coverage (priority), and the tests' inputs and expected rule ids."""
    problems: list[FileProblem] = []
    if ruleset.mode == "first_hit":
        problems += _first_hit(ruleset, data)
    if ruleset.kind == "PriorityRules":
        problems += _bands(ruleset, data)
    problems += _tests(ruleset, data)
    return problems


# --- first hit ----------------------------------------------------------------------------


def implies(later: Node, earlier: Node) -> bool:
    """True only when every ticket ``later`` matches is certainly matched by ``earlier`` too
    (sound, not complete: ``False`` means "not shown", never "proven different")."""
    if isinstance(earlier, Always) or later == earlier:
        return True
    if isinstance(later, AnyOf):
        return all(implies(c, earlier) for c in later.children)
    if isinstance(earlier, All):
        return all(implies(later, c) for c in earlier.children)
    if isinstance(later, All) and any(implies(c, earlier) for c in later.children):
        return True
    if isinstance(earlier, AnyOf) and any(implies(later, c) for c in earlier.children):
        return True
    if isinstance(later, Leaf) and isinstance(earlier, Leaf) and later.field == earlier.field:
        return _leaf_implies(later, earlier)
    return False


def _leaf_implies(later: Leaf, earlier: Leaf) -> bool:
    # values are normalised (casefolded) by the parser, so plain comparisons are exact
    if earlier.op == "exists":
        # every test but `exists` fails on a missing field, so a holding test means it is there
        return earlier.value is True and later.op != "exists"
    later_values: tuple[Any, ...] | None = (
        later.value if later.op == "in" else (later.value,) if later.op == "eq" else None
    )
    if earlier.op in ("eq", "in") and later_values is not None:
        allowed = earlier.value if earlier.op == "in" else (earlier.value,)
        return all(v in allowed for v in later_values)
    if earlier.op != "contains_any":
        return False
    substrings = FIELDS[later.field].type is not FieldType.keywords  # text: `in` is substring
    if later.op == "contains_any":
        if not substrings:  # a list field: membership, so only a subset of words is certain
            return set(later.value) <= set(earlier.value)
        return all(any(w in lw for w in earlier.value) for lw in later.value)
    if later_values is not None and substrings:
        return all(isinstance(v, str) and any(w in v for w in earlier.value) for v in later_values)
    return False


def _first_hit(ruleset: RuleSet, data: Any) -> list[FileProblem]:
    path = ruleset.path
    rules = ruleset.rules
    line = [position(data, ("rules", r.pri))[0] for r in rules]
    problems: list[FileProblem] = []
    used = [fields_used(r.condition) for r in rules]
    for i, later in enumerate(rules):
        for j in range(i):
            earlier = rules[j]
            always = isinstance(earlier.condition, Always)
            # a quick exclusion: apart from a catch-all, implication needs a field in common
            if not always and not used[i] & used[j]:
                continue
            if not implies(later.condition, earlier.condition):
                continue
            if always:
                why = (
                    f"rule {earlier.id!r} (line {line[j]}) has no `when`, so it takes every "
                    "ticket first; a catch-all must be the last rule: move it to the end"
                )
            elif later.condition == earlier.condition:
                why = (
                    f"rule {earlier.id!r} (line {line[j]}) has the same condition and comes "
                    "first; remove one of them or merge their actions"
                )
            else:
                why = (
                    f"every ticket it matches also matches rule {earlier.id!r} (line {line[j]}), "
                    f"which comes first; move {later.id!r} above {earlier.id!r} if it is the "
                    "more specific rule"
                )
            at = position(data, ("rules", later.pri))
            problems.append(
                FileProblem(path, *at, f"rule {later.id!r} can never match (first hit wins): {why}")
            )
            break  # one reason per rule is enough
    if rules and not any(isinstance(r.condition, Always) for r in rules):
        last = rules[-1]
        if ruleset.kind == "ClassificationRules":
            what = "gets no category or queue"
            then = "`then: [{set_category: general}, {set_queue: dispatch}]`"
        else:
            what = "gets no policy"
            then = f"`then: [{{use_policy: {next(iter(ruleset.policies), 'standard')}}}]`"
        problems.append(
            FileProblem(
                path, *position(data, ("rules", last.pri)),
                f"no catch-all: a ticket that matches no rule {what}; add a last rule without "
                f"`when`, e.g. `- id: catch-all` with {then}",
            )
        )  # fmt: skip
    return problems


# --- priority bands -------------------------------------------------------------------------

_RANK = {"P1": 1, "P2": 2, "P3": 3, "P4": 4}


def _bands(ruleset: RuleSet, data: Any) -> list[FileProblem]:
    """Every whole-number score must fall in exactly one band, P1 holding the highest scores."""
    path = ruleset.path
    problems: list[FileProblem] = []
    index = {id(b): i for i, b in enumerate(ruleset.bands)}

    def at(b: Band, key: str | None = None) -> tuple[int, int]:
        return position(data, ("bands", index[id(b)], *((key,) if key else ())))

    seen: dict[str, Band] = {}
    for b in ruleset.bands:
        if b.band in seen:
            first = at(seen[b.band])[0]
            problems.append(
                FileProblem(
                    path, *at(b, "band"),
                    f"band {b.band} is already defined at line {first}; "
                    "each of P1-P4 may appear once",
                )
            )  # fmt: skip
        seen.setdefault(b.band, b)
        if b.min is not None and b.below is not None and b.min >= b.below:
            problems.append(
                FileProblem(
                    path, *at(b, "min"),
                    f"band {b.band}: min {b.min} is not below `below` {b.below}, so no score "
                    "falls in it; make min smaller than below",
                )
            )  # fmt: skip
    if problems:
        return problems  # coverage over repeated or empty bands would only repeat the cause

    ordered = sorted(ruleset.bands, key=lambda b: -math.inf if b.min is None else b.min)
    lowest, highest = ordered[0], max(ordered, key=_top)
    if lowest.min is not None:
        problems.append(
            FileProblem(
                path, *at(lowest, "min"),
                f"scores below {lowest.min} fall in no band; leave out `min` on the lowest band "
                f"({lowest.band}) so it takes every lower score",
            )
        )  # fmt: skip
    if highest.below is not None:
        problems.append(
            FileProblem(
                path, *at(highest, "below"),
                f"scores from {highest.below} up fall in no band; leave out `below` on the "
                f"highest band ({highest.band}) so it takes every higher score",
            )
        )  # fmt: skip
    reach = ordered[0]  # of the bands so far, the one reaching highest
    for b in ordered[1:]:
        top = _top(reach)
        if b.min is None:  # sorted first, so the earlier band has no min either
            problems.append(
                FileProblem(
                    path, *at(b),
                    f"bands {reach.band} and {b.band} both leave out `min`, so both take the "
                    "lowest scores; only the lowest band may leave out min",
                )
            )  # fmt: skip
        elif top < b.min:
            problems.append(
                FileProblem(
                    path, *at(b, "min"),
                    f"gap: scores {top} to {b.min - 1} fall in no band; set {b.band}'s min to "
                    f"{top} or {reach.band}'s below to {b.min}",
                )
            )  # fmt: skip
        elif top > b.min:
            end = min(top, _top(b))
            shown = f"from {b.min} up" if math.isinf(end) else f"{b.min} to {end - 1}"
            fix = (
                f"set {reach.band}'s below to {b.min}"
                if reach.below is not None
                else f"give {reach.band} `below: {b.min}` (only the highest band leaves it out)"
            )
            problems.append(
                FileProblem(
                    path, *at(b, "min"),
                    f"overlap: scores {shown} fall in both {reach.band} and {b.band}; {fix}",
                )
            )  # fmt: skip
        if _top(b) > top:
            reach = b
    for lower, upper in pairwise(ordered):
        if _RANK[upper.band] > _RANK[lower.band]:
            problems.append(
                FileProblem(
                    path, *at(upper, "band"),
                    f"band {upper.band} holds higher scores than {lower.band}; higher scores "
                    "must be more urgent (P4 lowest ... P1 highest): swap their ranges",
                )
            )  # fmt: skip
    return problems


def _top(b: Band) -> float:
    return math.inf if b.below is None else b.below


# --- the file's tests -----------------------------------------------------------------------


def input_problems(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for each test input value the rules could not compare: an unknown field,
    or a value of the wrong type or outside a closed field's values."""
    out: list[tuple[str, str]] = []
    for name, value in raw.items():
        f = FIELDS.get(str(name))
        if f is None:
            out.append(
                (
                    str(name),
                    f"unknown field {name!r}{did_you_mean(str(name), list(FIELDS))} "
                    "(`fieldloop rules fields` lists them)",
                )
            )
            continue
        if value is None:
            continue  # the ticket does not have it
        wrong = _wrong_type(f.type, value)
        if wrong:
            out.append((f.name, f"{f.name} takes {wrong}, not {value!r}"))
        elif f.values and str(value).casefold() not in f.values:
            out.append(
                (
                    f.name,
                    f"{value!r} is not a {f.name}{did_you_mean(str(value), f.values)}; one of "
                    + ", ".join(f.values),
                )
            )
    return out


def _wrong_type(kind: FieldType, value: Any) -> str | None:
    """What ``kind`` takes, when ``value`` is not that."""
    if kind in (FieldType.text, FieldType.keyword):
        return None if isinstance(value, str) else "text (quote it)"
    if kind is FieldType.keywords:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else "a list of words, e.g. [hazard]"
    if kind is FieldType.boolean:
        return None if isinstance(value, bool) else "true or false"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "a number"
    if kind is FieldType.integer and not isinstance(value, int):
        return "a whole number"
    return None if math.isfinite(value) else "a finite number"


def _tests(ruleset: RuleSet, data: Any) -> list[FileProblem]:
    spec = ruleset.spec
    if spec is None:
        return []
    ids = [r.id for r in ruleset.rules]
    problems: list[FileProblem] = []
    for i, t in enumerate(spec.tests):
        here = ("tests", i)
        for name, message in input_problems(t.input):
            at = position(data, (*here, "input", name))
            problems.append(FileProblem(ruleset.path, *at, f"test {t.name!r}: {message}"))
        expected = getattr(t.expect, "rules", None) or []
        single = getattr(t.expect, "rule", None)
        key = "rule" if single is not None else "rules"
        for rid in [single] if single is not None else expected:
            if rid not in ids:
                problems.append(
                    FileProblem(
                        ruleset.path, *position(data, (*here, "expect", key)),
                        f"test {t.name!r}: expects rule {rid!r}, which is not in this file"
                        f"{did_you_mean(rid, ids)}",
                    )
                )  # fmt: skip
    return problems


def rule_files(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """The files to check: each file as given, each directory's ``*.yaml``; and the directories
    that held none (most likely a wrong path)."""
    files: list[Path] = []
    empty: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(x for x in p.glob("*.yaml") if x.is_file())
            files += found
            if not found:
                empty.append(p)
        else:
            files.append(p)
    return files, empty
