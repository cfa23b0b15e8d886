from __future__ import annotations

import pytest

from fieldloop.jsonpath import parse


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("$.temperature", ("temperature",)),
        ("temperature", ("temperature",)),
        ("$.env.t", ("env", "t")),
        ("env.t", ("env", "t")),
        ("$.values[2]", ("values", 2)),
        ("$['with space'].x", ("with space", "x")),
        ('$["中文"]', ("中文",)),
        ("$.a-b", ("a-b",)),
    ],
)
def test_parse_forms(text: str, steps: tuple[str | int, ...]) -> None:
    assert parse(text).steps == steps


@pytest.mark.parametrize("text", ["$", "", "$.", "$..a", "$.a[x]", "$.a[-1]", "a b", "$.a.[0]"])
def test_parse_refuses_what_it_does_not_understand(text: str) -> None:
    with pytest.raises(ValueError, match="JSON path"):
        parse(text)


def test_get_values_and_name_the_missing_step() -> None:
    doc = {"env": {"t": 21.5, "list": [1, {"x": 2}]}}
    assert parse("$.env.t").get(doc) == 21.5
    assert parse("$.env.list[1].x").get(doc) == 2
    with pytest.raises(KeyError, match="no member 'h'"):
        parse("$.env.h").get(doc)
    with pytest.raises(KeyError, match=r"no element \[5\]"):
        parse("$.env.list[5]").get(doc)
    with pytest.raises(KeyError, match="no member 'x'"):
        parse("$.env.t.x").get(doc)
    assert parse("$.env.t").top == "env"
