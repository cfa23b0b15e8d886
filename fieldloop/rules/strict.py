"""Strict YAML: what a rule file may not contain, found on the raw text before it is loaded.

Rule files are plain data edited by hand, so the YAML features that surprise people or run code are
refused, each at file:line:col with the fix: tags (``!!python/object`` ...), anchors and aliases
(which also stops "billion laughs" alias bombs), ``%`` directives, YAML 1.1 booleans (``no``,
``On``) and base-60 numbers (``1:30``) that other YAML tools read differently, duplicate keys,
files over 1 MB and very deep nesting.

Only ruamel's scanner and parser run here (tokens and events): nothing is constructed, so an
alias is never expanded and a tag never resolved to an object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    CollectionEndEvent,
    CollectionStartEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
)
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.tokens import AliasToken, AnchorToken, DirectiveToken, TagToken

from fieldloop.yamlfile import FileError, FileProblem

MAX_BYTES = 1024 * 1024  # 1 MB: far above any real rule file, far below a memory problem
MAX_DEPTH = 64  # conditions nest a dozen levels at most; the loader recurses per level
MAX_PROBLEMS = 100  # a generated file can have thousands of `no`s: the first 100 make the point

# YAML 1.1 reads these as booleans, YAML 1.2 (and ruamel) as text: the file means two things.
# true/false in any of the 1.2 spellings are booleans in both, so they are fine.
_YAML11_BOOLEANS = frozenset({"y", "yes", "n", "no", "on", "off"})
# YAML 1.1 base-60 integers and floats: 1:30 is 90 there and the text "1:30" here
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?")

_RESOLVER = VersionedResolver(version=(1, 2))
_STR = "tag:yaml.org,2002:str"


def read_text(path: Path) -> str:
    """The file as text, reading at most MAX_BYTES + 1 bytes; FileError if it is larger, cannot
    be read or is not UTF-8."""
    return read_source(path)[1]


def read_source(path: Path) -> tuple[bytes, str]:
    """The file's bytes and its text (``read_text``'s checks): the bytes are what a rule set's
    version is the digest of."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise FileError([FileProblem(str(path), 1, 1, f"cannot read the file: {exc}")]) from exc
    if len(raw) > MAX_BYTES:
        raise FileError([_too_big(path)])
    try:
        return raw, raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1) + 1
        raise FileError(
            [
                FileProblem(
                    str(path), line, col,
                    f"the file is not UTF-8 (byte 0x{raw[exc.start]:02x} here); save it as UTF-8",
                )
            ]
        ) from None  # fmt: skip


def _too_big(path: Path) -> FileProblem:
    try:
        size = f"{path.stat().st_size:,} bytes"
    except OSError:
        size = "too big"
    return FileProblem(
        str(path), 1, 1,
        f"the file is {size}; rule files are limited to 1 MB ({MAX_BYTES:,} bytes): split it",
    )  # fmt: skip


@dataclass
class StrictScan:
    problems: list[FileProblem] = field(default_factory=list)
    # False: loading would be unsafe or would only fail again (a tag, an alias, a syntax error,
    # a duplicate key, deep nesting): report these alone
    loadable: bool = True


def strict_problems(path: Path, text: str) -> list[FileProblem]:
    """Everything strict YAML refuses in ``text``, in file order."""
    return scan(path, text).problems


def scan(path: Path, text: str) -> StrictScan:
    out = StrictScan()
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        out.problems.append(_too_big(path))
        out.loadable = False
        return out
    where = str(path)
    _scan_tokens(where, text, out)
    _scan_events(where, text, out)
    out.problems.sort(key=lambda p: (p.line, p.col))
    if len(out.problems) > MAX_PROBLEMS:
        more = len(out.problems) - MAX_PROBLEMS
        last = out.problems[MAX_PROBLEMS - 1]
        del out.problems[MAX_PROBLEMS:]
        out.problems.append(
            FileProblem(where, last.line, last.col, f"... and {more} more problem(s) like these")
        )
    return out


def _scan_tokens(where: str, text: str, out: StrictScan) -> None:
    """Tags, anchors, aliases and directives, at their exact positions. A syntax error ends the
    scan quietly: the event scan reports it."""
    aliases: dict[str, list[FileProblem]] = {}
    try:
        for tok in YAML(typ="rt").scan(text):
            mark = tok.start_mark
            at = (where, mark.line + 1, mark.column + 1)
            if isinstance(tok, TagToken):
                handle, suffix = tok.value
                shown = f"{handle or ''}{suffix or ''}"
                out.problems.append(
                    FileProblem(
                        *at,
                        f"tag {shown} is refused: rule files hold plain values, never objects "
                        "or code; remove the tag (quote the value if you mean text)",
                    )
                )
                out.loadable = False
            elif isinstance(tok, AnchorToken):
                out.problems.append(
                    FileProblem(
                        *at,
                        f"anchor &{tok.value} is refused (no anchors or aliases in rule files); "
                        "remove it and write the value out where it is used",
                    )
                )
                out.loadable = False
            elif isinstance(tok, AliasToken):
                aliases.setdefault(tok.value, []).append(FileProblem(*at, ""))
                out.loadable = False
            elif isinstance(tok, DirectiveToken):
                out.problems.append(
                    FileProblem(
                        *at,
                        f"the %{tok.name} directive is refused: rule files are read as YAML "
                        "1.2 with no directives; remove this line",
                    )
                )
                out.loadable = False
    except YAMLError:
        pass
    for name, uses in aliases.items():
        # one line per alias name: an alias bomb uses each name many times
        times = f" (used {len(uses)} times)" if len(uses) > 1 else ""
        first = uses[0]
        out.problems.append(
            FileProblem(
                first.path, first.line, first.col,
                f"alias *{name}{times} is refused (no anchors or aliases in rule files); "
                "write the value out here instead",
            )
        )  # fmt: skip


@dataclass
class _Mapping:
    keys: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    at_key: bool = True  # the next node is a key


def _scan_events(where: str, text: str, out: StrictScan) -> None:
    """Plain scalars YAML 1.1 reads differently, duplicate keys, nesting depth, syntax errors."""
    stack: list[_Mapping | None] = []  # one entry per open collection (None: a sequence)
    try:
        for ev in YAML(typ="rt").parse(text):
            if isinstance(ev, NodeEvent):
                parent = stack[-1] if stack else None
                is_key = parent is not None and parent.at_key
                if isinstance(ev, ScalarEvent):
                    _plain(where, ev, out)
                    if is_key and parent is not None and ev.anchor is None and ev.tag is None:
                        _key(where, ev, parent, out)
                if isinstance(ev, CollectionStartEvent):
                    if len(stack) >= MAX_DEPTH:
                        m = ev.start_mark
                        out.problems.append(
                            FileProblem(
                                where, m.line + 1, m.column + 1,
                                f"nested deeper than {MAX_DEPTH} levels; simplify it",
                            )
                        )  # fmt: skip
                        out.loadable = False
                        return
                    stack.append(_Mapping() if isinstance(ev, MappingStartEvent) else None)
                    continue
                _node_done(stack)  # a scalar or an alias is a whole node
            elif isinstance(ev, CollectionEndEvent):
                stack.pop()
                _node_done(stack)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        context = exc.context
        start = exc.context_mark
        if context and start and exc.problem_mark and start.line != exc.problem_mark.line:
            # the mistake is usually where the construct began, not where the parser gave up
            context += f" (from line {start.line + 1}, column {start.column + 1})"
        what = " ".join(x for x in (context, exc.problem) if x)
        out.problems.append(
            FileProblem(where, line, col, f"invalid YAML: {what}; fix the syntax here")
        )
        out.loadable = False
    except ReaderError as exc:
        before = text[: exc.position]
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        out.problems.append(
            FileProblem(
                where, line, col,
                f"invalid character U+{ord(char):04X} ({exc.reason}); remove it",
            )
        )  # fmt: skip
        out.loadable = False


def _node_done(stack: list[_Mapping | None]) -> None:
    if stack and stack[-1] is not None:
        stack[-1].at_key = not stack[-1].at_key


def _plain(where: str, ev: ScalarEvent, out: StrictScan) -> None:
    if ev.style is not None or ev.tag is not None:
        return  # quoted, a block scalar, or tagged (refused already)
    value: str = ev.value
    m = ev.start_mark
    if value.casefold() in _YAML11_BOOLEANS:
        out.problems.append(
            FileProblem(
                where, m.line + 1, m.column + 1,
                f"{value!r} means true/false in YAML 1.1 but text in YAML 1.2, so tools disagree "
                f'about it; quote it ("{value}") if you mean the word, or write true/false',
            )
        )  # fmt: skip
    elif _SEXAGESIMAL.fullmatch(value):
        out.problems.append(
            FileProblem(
                where, m.line + 1, m.column + 1,
                f"{value!r} is a base-60 number in YAML 1.1 (1:30 is 90) but text in YAML 1.2; "
                f'quote it ("{value}")',
            )
        )  # fmt: skip


def _key(where: str, ev: ScalarEvent, mapping: _Mapping, out: StrictScan) -> None:
    # keys compare as the loader would: `a` and "a" are the same key, `1` and "1" are not
    kind = _STR if ev.style is not None else _RESOLVER.resolve(ScalarNode, ev.value, (True, False))
    ident = (str(kind), ev.value)
    m = ev.start_mark
    first = mapping.keys.get(ident)
    if first is None:
        mapping.keys[ident] = (m.line + 1, m.column + 1)
        return
    out.problems.append(
        FileProblem(
            where, m.line + 1, m.column + 1,
            f"duplicate key {ev.value!r}: it is already at line {first[0]}, column {first[1]}; "
            "keep one of them (YAML would silently keep only one value)",
        )
    )  # fmt: skip
    out.loadable = False
