"""fieldloop.rules.strict: the YAML a rule file may not contain, found before anything is built."""

from __future__ import annotations

import pathlib
import time
from pathlib import Path
from typing import Any

import pytest

from fieldloop.rules.strict import MAX_BYTES, MAX_DEPTH, MAX_PROBLEMS, read_text, scan
from fieldloop.rules.strict import strict_problems as problems_of
from fieldloop.yamlfile import FileError, parse_yaml

REPO = Path(__file__).resolve().parents[3]
F = Path("rules/x.yaml")

ALIAS_BOMB = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""  # 9**9 "lol"s if it were ever expanded


def lines(text: str) -> list[str]:
    return [str(p) for p in problems_of(F, text)]


def test_a_plain_file_has_no_problems() -> None:
    text = (
        "apiVersion: fieldloop/v1\nkind: PriorityRules\n"
        "rules:\n  - id: a\n    when: {reopened: {eq: true}}\n    then: [{add_score: 10}]\n"
        "  - id: b  # a comment\n    description: 'no: quoted is fine'\n"
        '    when: {hour: {between: [0, 6]}}\n    then: [{add_score: -5}]\nnote: "1:30"\n'
        "x: |\n  no\n  1:30\n"
    )
    assert problems_of(F, text) == []


def test_the_shipped_detection_rules_are_strict_clean() -> None:
    path = REPO / "rules/detection.yaml"
    assert problems_of(path, path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    ("text", "col", "tag"),
    [
        (
            'cmd: !!python/object/apply:os.system ["touch x"]\n',
            6,
            "!!python/object/apply:os.system",
        ),
        ("a: !foo bar\n", 4, "!foo"),
        ("a: !!str 12\n", 4, "!!str"),
        ("a: ! 12\n", 4, "!"),
        ("a: [1, !!binary aGk=]\n", 8, "!!binary"),
    ],
)
def test_tags_of_every_kind_are_refused(text: str, col: int, tag: str) -> None:
    result = scan(F, text)
    assert not result.loadable
    (p,) = result.problems
    assert (p.line, p.col) == (1, col)
    assert p.message.startswith(f"tag {tag} is refused") and "remove the tag" in p.message


def test_anchors_and_aliases_are_refused_at_each() -> None:
    out = lines("base: &b {add_score: 10}\nr1: *b\nr2: *b\n")
    assert out == [
        "rules/x.yaml:1:7: anchor &b is refused (no anchors or aliases in rule files); "
        "remove it and write the value out where it is used",
        "rules/x.yaml:2:5: alias *b (used 2 times) is refused (no anchors or aliases in rule "
        "files); write the value out here instead",
    ]


def test_merge_keys_are_refused_as_aliases() -> None:
    assert any("alias *d" in x for x in lines("d: &d {a: 1}\ne:\n  <<: *d\n"))


def test_an_alias_bomb_is_refused_fast_without_expanding() -> None:
    start = time.perf_counter()
    result = scan(F, ALIAS_BOMB)
    assert time.perf_counter() - start < 0.5
    assert not result.loadable
    assert str(result.problems[0]) == (
        "rules/x.yaml:1:4: anchor &a is refused (no anchors or aliases in rule files); "
        "remove it and write the value out where it is used"
    )
    assert "alias *h (used 9 times)" in result.problems[-1].message
    assert len(result.problems) == 17  # one per anchor and one per alias name, not per use


@pytest.mark.parametrize("word", ["no", "No", "NO", "yes", "YES", "On", "on", "OFF", "y", "N"])
def test_yaml11_booleans_are_refused_with_the_fix(word: str) -> None:
    result = scan(F, f"when: {{reopened: {{eq: {word}}}}}\n")
    assert result.loadable  # the loader reads it as text, and says what more is wrong
    assert [str(p) for p in result.problems] == [
        f"rules/x.yaml:1:23: {word!r} means true/false in YAML 1.1 but text in YAML 1.2, so "
        f'tools disagree about it; quote it ("{word}") if you mean the word, or write true/false'
    ]


def test_a_yaml11_boolean_key_is_refused() -> None:
    assert lines("on: 1\n")[0].startswith("rules/x.yaml:1:1: 'on' means true/false")


@pytest.mark.parametrize(
    "value", ["true", "false", "True", "FALSE", '"no"', "'on'", "nope", "yesterday", "ON_CALL"]
)
def test_true_false_and_quoted_or_longer_words_are_fine(value: str) -> None:
    assert lines(f"a: {value}\nb: [{value}]\n") == []


@pytest.mark.parametrize(("value", "col"), [("1:30", 4), ("190:20:30", 4), ("-1:30", 4)])
def test_sexagesimal_numbers_are_refused(value: str, col: int) -> None:
    (line,) = lines(f"a: {value}\n")
    assert line.startswith(f"rules/x.yaml:1:{col}: {value!r} is a base-60 number in YAML 1.1")
    assert line.endswith(f'quote it ("{value}")')


@pytest.mark.parametrize("value", ['"1:30"', "10:70", "http://x:80", "1:30pm", "a:b", "12"])
def test_things_that_only_look_like_base_60_are_fine(value: str) -> None:
    assert lines(f"a: {value}\n") == []


def test_duplicate_keys_name_both_lines() -> None:
    text = "rules:\n  - id: a\n    then: []\n    id: b\n  - id: c\n"
    result = scan(F, text)
    assert not result.loadable
    assert [str(p) for p in result.problems] == [
        "rules/x.yaml:4:5: duplicate key 'id': it is already at line 2, column 5; keep one of "
        "them (YAML would silently keep only one value)"
    ]


def test_duplicate_keys_compare_as_the_loader_does() -> None:
    assert lines('a: 1\n"a": 2\n')[0].startswith("rules/x.yaml:2:1: duplicate key 'a'")
    assert lines('1: u\n"1": v\n{a: 1}: w\n') == []  # an int and a text key are different keys
    assert lines("a: {b: 1}\nc: {b: 1}\n") == []  # the same key in two mappings


def test_directives_are_refused() -> None:
    assert lines("%YAML 1.1\n---\na: 1\n") == [
        "rules/x.yaml:1:1: the %YAML directive is refused: rule files are read as YAML 1.2 "
        "with no directives; remove this line"
    ]


def test_a_syntax_error_is_reported_where_the_loader_would() -> None:
    text = "rules:\n  - id: a\n   then: [\n"
    result = scan(F, text)
    assert not result.loadable
    with pytest.raises(FileError) as exc:
        parse_yaml(F, text)
    (p,) = result.problems
    (loader,) = exc.value.problems
    assert (p.line, p.col) == (loader.line, loader.col) == (3, 4)
    assert p.message == (
        "invalid YAML: while parsing a block collection (from line 2, column 3) expected "
        "<block end>, but found '<block mapping start>'; fix the syntax here"
    )


def test_a_syntax_error_names_where_the_construct_began() -> None:
    assert lines("rules:\n  - id: a\n    then\n\n    when: {}\n") == [
        "rules/x.yaml:5:5: invalid YAML: while scanning a simple key (from line 3, column 5) "
        "could not find expected ':'; fix the syntax here"
    ]


def test_a_control_character_is_reported_not_raised() -> None:
    assert lines("a: b\nc: d\x07\n") == [
        "rules/x.yaml:2:5: invalid character U+0007 (special characters are not allowed); remove it"
    ]


def test_deep_nesting_is_refused_before_the_loader_recurses() -> None:
    depth = MAX_DEPTH + 1
    result = scan(F, "[" * depth + "]" * depth + "\n")
    assert not result.loadable
    assert result.problems[0].message == f"nested deeper than {MAX_DEPTH} levels; simplify it"
    assert scan(F, "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n").problems == []


def test_a_flood_of_problems_is_cut_short() -> None:
    out = lines("".join(f"k{i}: no\n" for i in range(MAX_PROBLEMS + 50)))
    assert len(out) == MAX_PROBLEMS + 1
    assert out[-1].endswith("... and 50 more problem(s) like these")


def test_text_over_the_limit_is_refused() -> None:
    result = scan(F, "a: " + "x" * MAX_BYTES)
    assert not result.loadable and "limited to 1 MB" in result.problems[0].message


def test_read_text_refuses_a_big_file_reading_one_byte_past_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(10 * 1024 * 1024)  # 10 MB without writing them
    read: list[int] = []
    real_open = pathlib.Path.open

    def spy(self: Path, *args: Any, **kwargs: Any) -> Any:
        handle = real_open(self, *args, **kwargs)
        real_read = handle.read

        def counted(n: int = -1) -> bytes:
            data = real_read(n)
            read.append(len(data))
            return data

        handle.read = counted
        return handle

    monkeypatch.setattr(pathlib.Path, "open", spy)
    with pytest.raises(FileError) as exc:
        read_text(big)
    assert sum(read) == MAX_BYTES + 1
    assert str(exc.value) == (
        f"{big}:1:1: the file is 10,485,760 bytes; rule files are limited to 1 MB "
        "(1,048,576 bytes): split it"
    )


def test_read_text_at_the_limit_is_fine(tmp_path: Path) -> None:
    f = tmp_path / "full.yaml"
    f.write_bytes(b"#" * MAX_BYTES)
    assert len(read_text(f)) == MAX_BYTES


def test_read_text_names_a_byte_that_is_not_utf8(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes("a: 1\nb: café\n".encode("latin-1"))
    with pytest.raises(FileError) as exc:
        read_text(f)
    assert str(exc.value) == f"{f}:2:7: the file is not UTF-8 (byte 0xe9 here); save it as UTF-8"


def test_read_text_drops_a_byte_order_mark(tmp_path: Path) -> None:
    f = tmp_path / "bom.yaml"
    f.write_bytes("\ufeffa: 漏水\n".encode())
    assert read_text(f) == "a: 漏水\n"
