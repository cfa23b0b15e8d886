"""The durable-rules JSON that central.rules.compile makes of a rule file: one single-pattern
rule per rule, ordered by pri, the chunk guard first; negation pushed to the tests with an
explicit $nex for a missing field; in / not_in / between expanded; text contains_any and
matches as precomputed atoms; too-complex rules split, long files chunked. No engine runs here
(tests/integration/central/test_rules_differential.py runs it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from central.rules.compile import (
    MAX_GROUPS,
    MAX_STACK,
    CompileError,
    compile_ruleset,
    dumps,
    encode_facts,
)
from fieldloop.rules.conditions import Test
from fieldloop.rules.files import RuleSet, load_ruleset

GUARD = {"_c": 0}


def _file(*whens: Any, kind: str = "ClassificationRules") -> RuleSet:
    rules = []
    for i, when in enumerate(whens):
        rule: dict[str, Any] = {"id": f"r{i}", "then": [{"set_category": "x"}]}
        if kind == "PriorityRules":
            rule["then"] = [{"add_score": 1}]
        if when is not None:
            rule["when"] = when
        rules.append(rule)
    doc: dict[str, Any] = {"apiVersion": "fieldloop/v1", "kind": kind, "rules": rules}
    if kind == "PriorityRules":
        doc["bands"] = [{"band": "P4"}]
    return load_ruleset(Path("t.yaml"), json.dumps(doc, ensure_ascii=False))


def _pattern(when: Any) -> dict[str, Any]:
    compiled = compile_ruleset(_file(when))
    (piece,) = compiled.pieces
    assert compiled.definition[piece.name] == {"all": [{"m": piece.pattern}], "pri": 0}
    return piece.pattern


def _and(*tests: Any) -> dict[str, Any]:
    return {"$and": [GUARD, *tests]}


NEX_URGENCY = {"$nex": {"f_urgency": 1}}
NEX_VALUE = {"$nex": {"f_fault_value": 1}}


@pytest.mark.parametrize(
    ("when", "pattern"),
    [
        ({"urgency": {"eq": "High"}}, _and({"f_urgency": "high"})),
        ({"urgency": {"ne": "high"}}, _and({"$neq": {"f_urgency": "high"}})),
        (
            {"urgency": {"in": ["high", "critical"]}},
            _and({"$or": [{"f_urgency": "high"}, {"f_urgency": "critical"}]}),
        ),
        (
            {"urgency": {"not_in": ["high", "low"]}},
            _and({"$neq": {"f_urgency": "high"}}, {"$neq": {"f_urgency": "low"}}),
        ),
        ({"fault.value": {"gt": 3}}, _and({"$gt": {"f_fault_value": 3}})),
        ({"fault.value": {"gte": 3}}, _and({"$gte": {"f_fault_value": 3}})),
        ({"hour": {"lt": 8}}, _and({"$lt": {"f_hour": 8}})),
        ({"hour": {"lte": 8}}, _and({"$lte": {"f_hour": 8}})),
        (
            {"fault.value": {"between": [1, 2.5]}},
            _and({"$gte": {"f_fault_value": 1}}, {"$lte": {"f_fault_value": 2.5}}),
        ),
        ({"asset.id": {"exists": True}}, _and({"$ex": {"f_asset_id": 1}})),
        ({"asset.id": {"exists": False}}, _and({"$nex": {"f_asset_id": 1}})),
        ({"reopened": {"eq": True}}, _and({"f_reopened": True})),
        (
            {"tags": {"contains_any": ["hazard", "VIP"]}},
            _and({"$iany": {"f_tags": {"$or": [{"$i": "hazard"}, {"$i": "vip"}]}}}),
        ),
        ({"tags": {"contains_any": ["hazard"]}}, _and({"$iany": {"f_tags": {"$i": "hazard"}}})),
        # negation, with a missing field holding `not`
        (
            {"not": {"urgency": {"eq": "high"}}},
            _and({"$or": [NEX_URGENCY, {"$neq": {"f_urgency": "high"}}]}),
        ),
        ({"not": {"urgency": {"ne": "high"}}}, _and({"$or": [NEX_URGENCY, {"f_urgency": "high"}]})),
        (
            {"not": {"urgency": {"in": ["high", "low"]}}},
            _and(
                {
                    "$or": [
                        NEX_URGENCY,
                        {"$and": [{"$neq": {"f_urgency": "high"}}, {"$neq": {"f_urgency": "low"}}]},
                    ]
                }
            ),
        ),
        (
            {"not": {"urgency": {"not_in": ["high", "low"]}}},
            _and({"$or": [NEX_URGENCY, {"f_urgency": "high"}, {"f_urgency": "low"}]}),
        ),
        (
            {"not": {"fault.value": {"gt": 3}}},
            _and({"$or": [NEX_VALUE, {"$lte": {"f_fault_value": 3}}]}),
        ),
        (
            {"not": {"fault.value": {"lte": 3}}},
            _and({"$or": [NEX_VALUE, {"$gt": {"f_fault_value": 3}}]}),
        ),
        (
            {"not": {"fault.value": {"between": [1, 2]}}},
            _and(
                {"$or": [NEX_VALUE, {"$lt": {"f_fault_value": 1}}, {"$gt": {"f_fault_value": 2}}]}
            ),
        ),
        ({"not": {"asset.id": {"exists": True}}}, _and({"$nex": {"f_asset_id": 1}})),
        ({"not": {"asset.id": {"exists": False}}}, _and({"$ex": {"f_asset_id": 1}})),
        (
            {"not": {"tags": {"contains_any": ["hazard", "vip"]}}},
            _and(
                {
                    "$or": [
                        {"$nex": {"f_tags": 1}},
                        {
                            "$iall": {
                                "f_tags": {
                                    "$and": [{"$neq": {"$i": "hazard"}}, {"$neq": {"$i": "vip"}}]
                                }
                            }
                        },
                    ]
                }
            ),
        ),
        # NNF through all / any / not
        (
            {"not": {"all": [{"urgency": {"eq": "high"}}, {"reopened": {"eq": True}}]}},
            _and(
                {
                    "$or": [
                        NEX_URGENCY,
                        {"$neq": {"f_urgency": "high"}},
                        {"$nex": {"f_reopened": 1}},
                        {"$neq": {"f_reopened": True}},
                    ]
                }
            ),
        ),
        (
            {"not": {"any": [{"urgency": {"eq": "high"}}, {"hour": {"gt": 18}}]}},
            _and(
                {"$or": [NEX_URGENCY, {"$neq": {"f_urgency": "high"}}]},
                {"$or": [{"$nex": {"f_hour": 1}}, {"$lte": {"f_hour": 18}}]},
            ),
        ),
        ({"not": {"not": {"urgency": {"eq": "high"}}}}, _and({"f_urgency": "high"})),
        (None, GUARD),  # a catch-all: the guard alone
    ],
)
def test_each_operator_compiles_to_durable_json(when: Any, pattern: dict[str, Any]) -> None:
    assert _pattern(when) == pattern


def test_text_contains_any_and_matches_are_precomputed_atoms() -> None:
    compiled = compile_ruleset(
        _file(
            {"text": {"contains_any": ["漏水", "Leak"]}},
            {"not": {"text": {"contains_any": ["leak", "漏水"]}}},  # another atom: other order
            {
                "any": [
                    {"problem_type": {"matches": "空.调"}},
                    {"text": {"contains_any": ["漏水", "leak"]}},
                ]
            },
        )
    )
    assert compiled.atoms == (
        Test("text", "contains_any", ("漏水", "leak")),
        Test("text", "contains_any", ("leak", "漏水")),
        Test("problem_type", "matches", "空.调"),
    )
    p0, p1, p2 = (p.pattern for p in compiled.pieces)
    assert p0 == _and({"_a0": True})
    assert p1 == _and({"_a1": False})  # the atom is the reference's answer: `not` is false
    assert p2 == _and({"$or": [{"_a2": True}, {"_a0": True}]})  # the same test, the same atom
    assert compiled.chunks[0].atoms == (0, 1, 2)
    assert compiled.fields == ()  # only atoms: no field travels to the engine


def test_the_ruleset_is_named_by_kind_and_version_and_ordered_by_pri() -> None:
    ruleset = _file({"urgency": {"eq": "high"}}, {"hour": {"gt": 3}}, None)
    compiled = compile_ruleset(ruleset)
    assert compiled.name == f"c_classification_{ruleset.version[:12]}"
    assert compiled.mode == "first_hit"
    assert compiled.rule_ids == ("r0", "r1", "r2")
    assert [(p.rule_id, p.pri, p.chunk) for p in compiled.pieces] == [
        ("r0", 0, 0),
        ("r1", 1, 0),
        ("r2", 2, 0),
    ]
    assert json.loads(compiled.to_json()) == compiled.definition
    assert set(compiled.fields) == {"urgency", "hour"}
    prio = compile_ruleset(_file({"urgency": {"eq": "high"}}, kind="PriorityRules"))
    assert prio.name.startswith("c_priority_")
    assert prio.mode == "collect"


def test_a_rule_that_never_holds_is_left_out() -> None:
    compiled = compile_ruleset(_file({"all": [{"urgency": {"eq": "high"}}]}, None))
    assert [p.rule_id for p in compiled.pieces] == ["r0", "r1"]


def test_floats_are_written_as_durable_parses_them() -> None:
    assert dumps({"x": 1e-07}) == '{"x":1.0e-07}'
    assert dumps({"x": 1e16, "y": -2.5e-300}) == '{"x":1.0e+16,"y":-2.5e-300}'
    assert dumps({"x": 0.1, "s": 'a"b\n漏'}) == '{"x":0.1,"s":"a\\"b\\n漏"}'
    pattern = _pattern({"fault.value": {"gt": 1e-07}})
    assert dumps(pattern) == '{"$and":[{"_c":0},{"$gt":{"f_fault_value":1.0e-07}}]}'
    with pytest.raises(ValueError, match="finite"):
        dumps({"x": [float("nan")]})


def test_facts_are_encoded_typed_with_list_sentinels_and_long_strings_blanked() -> None:
    compiled = compile_ruleset(
        _file(
            {"tags": {"contains_any": ["hazard"]}},
            {"title": {"eq": "leak"}},
            {"fault.value": {"gt": 1}},
            {"reopened": {"eq": True}},
        )
    )
    facts = {
        "tags": ("hazard",),
        "title": "leak" * 20_000,
        "fault.value": 2.5,
        "reopened": False,
        "urgency": "high",  # not tested by the engine: not sent
    }
    assert encode_facts(compiled, facts) == {
        "f_tags": ["hazard", ""],
        "f_title": "",  # past durable's 16-bit string lengths; equal to no operand
        "f_fault_value": 2.5,
        "f_reopened": False,
    }
    assert encode_facts(compiled, {"tags": (), "title": None}) == {"f_tags": [""]}
    # a lone surrogate cannot reach the C engine (UTF-8) nor equal an operand
    assert encode_facts(compiled, {"title": "leak\ud800"}) == {"f_title": ""}
    for bad in ({"fault.value": "2"}, {"fault.value": True}, {"fault.value": float("inf")}):
        with pytest.raises(ValueError, match=r"fault\.value"):
            encode_facts(compiled, bad)
    with pytest.raises(ValueError, match="beyond"):
        encode_facts(compiled, {"fault.value": 2**60})
    with pytest.raises(ValueError, match="reopened"):
        encode_facts(compiled, {"reopened": 1})


def _not_eq(n: int) -> dict[str, Any]:
    return {"all": [{"not": {"asset.id": {"eq": f"a{i}"}}} for i in range(n)]}


def test_a_rule_with_too_many_groups_becomes_several_durable_rules() -> None:
    # each negated test is an $or: 17 of them and the guard's $and are 18 groups, over 15
    compiled = compile_ruleset(_file(_not_eq(17), None))
    pieces = [p for p in compiled.pieces if p.rule_id == "r0"]
    assert len(pieces) == 8  # three $or distributed
    assert {p.pri for p in pieces} == {0}
    for p in pieces:
        assert dumps(p.pattern).count('"$and"') + dumps(p.pattern).count('"$or"') <= MAX_GROUPS
    assert compiled.pieces[-1].rule_id == "r1"
    with pytest.raises(CompileError, match=r"'r0'.*durable rules"):
        compile_ruleset(_file(_not_eq(30)))


def test_rules_that_can_all_match_at_once_are_spread_over_chunks() -> None:
    # durable's evaluation stack holds 64 matched nodes: 200 of these in one network would
    # overflow it for fault.value 1000
    compiled = compile_ruleset(_file(*({"fault.value": {"gt": i}} for i in range(200))))
    sizes = [sum(1 for p in compiled.pieces if p.chunk == c.index) for c in compiled.chunks]
    assert len(sizes) >= 4 and max(sizes) <= MAX_STACK
    assert [p.chunk for p in compiled.pieces] == sorted(p.chunk for p in compiled.pieces)
    assert all(p.pattern["$and"][0] == {"_c": p.chunk} for p in compiled.pieces)
    # equal tests of one property on different values cannot match together: one chunk
    exclusive = compile_ruleset(_file(*({"fault.code": {"eq": f"c{i}"}} for i in range(200))))
    assert len(exclusive.chunks) == 1


def test_operands_durable_cannot_compare_exactly_are_refused() -> None:
    with pytest.raises(CompileError, match=r"'r0'.*2\*\*53"):
        compile_ruleset(_file({"fault.value": {"gt": 2**60}}))
