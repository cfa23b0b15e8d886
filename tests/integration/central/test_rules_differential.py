"""durable-rules in its supervised worker (central.rules) against the reference evaluator
(fieldloop.rules.evaluate.matching): random rule files over every field and operator (nested
all/any/not) and a random corpus of facts (Chinese and English text holding or missing the
rules' words, quotes, backslashes and newlines, missing fields, boundary numbers), both with
fixed seeds, plus the shipped rules on the checked-in corpus. They must agree on every input:
the same ids for a collect file, the same first id for a first-hit file.

Also: kill -9 of the worker gives EngineUnavailable once, then the engine recovers; a call that
times out does the same; an action that raises inside durable is an error, not a silent miss;
1,100 rules and thousands of messages stay clear of durable's per-ruleset state limits."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central.rules.compile import SID, compile_ruleset
from central.rules.worker import (
    ActionError,
    DurableEngine,
    EngineUnavailable,
    Runtime,
)
from fieldloop.rules.conditions import ConditionError, normalise_facts, parse_condition
from fieldloop.rules.evaluate import matching
from fieldloop.rules.fields import FIELDS, FieldType
from fieldloop.rules.files import RuleSet, load_ruleset
from fieldloop.yamlfile import parse_yaml

REPO = Path(__file__).resolve().parents[3]

# --- vocabularies -----------------------------------------------------------------------------

WORDS = [
    "漏水", "渗水", "燃气泄漏", "煤气味", "电梯", "困人", "短路", "跳闸", "水漏水", "空调",
    "leak", "water leak", "gas", "smell of gas", "lift", "trapped", "aba", "no heat", "tap",
    'a"b', "c:\\temp", "50%", "(x)", "a.b", "😀", "ß", "nt",
]  # fmt: skip
FILLER = ["，", "。", " ", "  ", "\n", "\t", "x", "楼上", "please", "房间", "\\", '"', "%", "ab"]
PATTERNS = [
    "漏.{0,3}水", "leak(ing)?", r"\bac\b", "^gas", "水$", "[0-9]{3}", r"a\.b", "trapp?ed",
    "电梯.*困", r"\d+%",
]  # fmt: skip
KEYWORDS: dict[str, list[str]] = {
    "problem_type": ["hvac", "plumbing", "空调", "给排水", "electrical", 'a"b', "x\\y"],
    "site": ["s1", "s2", "site-3"],
    "category": ["gas", "plumbing", "hvac", "lift", "water_leak"],
    "queue": ["emergency", "facilities", "dispatch"],
    "asset.id": ["ch-1", "pump-2", "lift-3"],
    "asset.class": ["chiller", "pump", "lift", "ahu"],
    "fault.code": ["ht-01", "lp-02", "x.y"],
    "fault.metric": ["discharge_temp", "pressure"],
    "customer.tier": ["vip", "gold", "standard"],
}
TAGS = ["hazard", "vip", "water_damage", "after_hours", 'q"t']
NUMBERS = [-1.5, 0, 0.1, 1, 2.5, 3, 10, 37.5, 100, 1e-07, 1e16]
OPS: dict[FieldType, list[str]] = {
    FieldType.text: ["eq", "ne", "in", "not_in", "exists", "contains_any", "matches"],
    FieldType.keyword: ["eq", "ne", "in", "not_in", "exists", "contains_any", "matches"],
    FieldType.number: ["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between", "exists"],
    FieldType.keywords: ["contains_any", "exists"],
    FieldType.boolean: ["eq", "ne", "exists"],
}
OPS[FieldType.integer] = OPS[FieldType.number]
NOT_AN_OR = {"exists", "contains_any", "matches"}  # negated: $nex/$ex or an atom, no $or


def _scalars(rnd: random.Random, name: str) -> Any:
    field = FIELDS[name]
    if field.type in (FieldType.number, FieldType.integer):
        if name == "hour":
            return rnd.randint(0, 23)
        if name == "weekday":
            return rnd.randint(1, 7)
        return rnd.choice(NUMBERS)
    if field.type is FieldType.boolean:
        return rnd.random() < 0.5
    if field.values:
        return rnd.choice(field.values)
    if field.type is FieldType.text:
        return rnd.choice(WORDS)
    return rnd.choice(KEYWORDS[name])


def _operand(rnd: random.Random, name: str, op: str) -> Any:
    field = FIELDS[name]
    if op == "exists":
        return rnd.random() < 0.6
    if op == "matches":
        return rnd.choice(PATTERNS)
    if op == "contains_any":
        pool = TAGS if field.type is FieldType.keywords else WORDS + KEYWORDS.get(name, [])
        return rnd.sample(pool, rnd.randint(1, 3))
    if op in ("in", "not_in"):
        return [_scalars(rnd, name) for _ in range(rnd.randint(1, 3))]
    if op == "between":
        return sorted([_scalars(rnd, name), _scalars(rnd, name)])
    return _scalars(rnd, name)


def _condition(rnd: random.Random, depth: int) -> dict[str, Any]:
    if depth == 0 or rnd.random() < 0.45:
        name = rnd.choice(list(FIELDS))
        op = rnd.choice(OPS[FIELDS[name].type])
        return {name: {op: _operand(rnd, name, op)}}
    kind = rnd.choice(["all", "any", "not"])
    if kind == "not":
        return {"not": _condition(rnd, depth - 1)}
    return {kind: [_condition(rnd, depth - 1) for _ in range(rnd.randint(1, 3))]}


def random_rules(seed: int, n: int, kind: str, catch_all: bool = False) -> RuleSet:
    """A rule file of ``n`` random rules, loaded through the real loader."""
    rnd = random.Random(seed)
    rules = []
    while len(rules) < n:
        when = _condition(rnd, 3)
        try:
            parse_condition(when)
        except ConditionError:  # e.g. a pattern the checker refuses
            continue
        then = [{"set_category": "c"}] if kind == "ClassificationRules" else [{"add_score": 1}]
        rules.append({"id": f"r{len(rules)}", "when": when, "then": then})
    if catch_all:
        rules.append({"id": "catch-all", "then": [{"set_category": "general"}]})
    doc: dict[str, Any] = {"apiVersion": "fieldloop/v1", "kind": kind, "rules": rules}
    if kind == "PriorityRules":
        doc["bands"] = [{"band": "P4"}]
    return load_ruleset(Path(f"random-{seed}.yaml"), json.dumps(doc, ensure_ascii=False))


def _text(rnd: random.Random) -> str:
    parts = []
    for _ in range(rnd.randint(0, 6)):
        w = rnd.choice(WORDS + FILLER + FILLER)
        parts.append(w.upper() if rnd.random() < 0.2 else w)
    return "".join(parts)


def random_facts(seed: int, n: int) -> list[dict[str, Any]]:
    """``n`` fact sets as normalise_facts makes them; each field present with p = 0.6."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        raw: dict[str, Any] = {}
        for name, field in FIELDS.items():
            if rnd.random() > 0.6:
                continue
            if field.type is FieldType.text:
                raw[name] = _text(rnd)
            elif field.type is FieldType.keywords:
                raw[name] = rnd.sample(TAGS, rnd.randint(0, 3))
            elif name == "fault.value":
                x = rnd.choice(NUMBERS)
                raw[name] = rnd.choice([x, x + 1e-9, x - 1e-9, float(x), -x])
            else:
                raw[name] = _scalars(rnd, name)
        if rnd.random() < 0.3:
            raw.pop("text", None)  # built from title and description
        out.append(normalise_facts(raw))
    return out


def _expected(ruleset: RuleSet, facts: dict[str, Any]) -> list[str]:
    hits = matching(ruleset, facts)
    return hits[:1] if ruleset.mode == "first_hit" else hits


def _disagreements(
    engine: DurableEngine, ruleset: RuleSet, corpus: list[dict[str, Any]]
) -> list[str]:
    bad = []
    for i, facts in enumerate(corpus):
        want, got = _expected(ruleset, facts), engine.matching(ruleset, facts)
        if want != got:
            bad.append(f"#{i}: reference {want}, durable {got}, facts {facts}")
    return bad


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[DurableEngine]:
    with DurableEngine(timeout=10) as e:
        yield e


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, Any]]:
    return random_facts(seed=7, n=2000)


# --- agreement ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "n", "kind", "catch_all"),
    [
        (1, 40, "ClassificationRules", True),
        (2, 40, "ClassificationRules", False),
        (3, 40, "PriorityRules", False),
        (4, 300, "PriorityRules", False),
        (5, 300, "ClassificationRules", True),
    ],
)
def test_random_rules_agree_with_the_reference(
    engine: DurableEngine,
    corpus: list[dict[str, Any]],
    seed: int,
    n: int,
    kind: str,
    catch_all: bool,
) -> None:
    ruleset = random_rules(seed, n, kind, catch_all)
    compiled = engine.load(ruleset)
    assert len(compiled.rule_ids) == len(ruleset.rules)
    bad = _disagreements(engine, ruleset, corpus)
    assert not bad, f"{len(bad)} of {len(corpus)} disagree:\n" + "\n".join(bad[:10])
    # and the corpus is not trivial for this file: rules both match and miss
    hits = {rid for facts in corpus[:300] for rid in matching(ruleset, facts)}
    assert len(hits) > n // 4


@pytest.mark.parametrize("kind", ["ClassificationRules", "PriorityRules"])
def test_rules_split_into_several_durable_rules_agree(
    engine: DurableEngine, corpus: list[dict[str, Any]], kind: str
) -> None:
    """Many negated tests in one rule: more $or than durable takes in one rule, so the rule
    becomes several durable rules with one id and pri."""
    rnd = random.Random(31)
    scalar = [n for n, f in FIELDS.items() if f.type is not FieldType.keywords]
    rules = []
    for i in range(16):
        tests = []  # each a `not` durable writes as an $or ($nex or the opposite test)
        for _ in range(13 + i % 4):
            name = rnd.choice(scalar)
            op = rnd.choice([o for o in OPS[FIELDS[name].type] if o not in NOT_AN_OR])
            tests.append({"not": {name: {op: _operand(rnd, name, op)}}})
        if i % 2:
            when: dict[str, Any] = {"all": tests}
        else:
            when = {"any": [{"all": tests}, {"all": [*tests[1:], tests[0]["not"]]}]}
        then = [{"set_category": "c"}] if kind == "ClassificationRules" else [{"add_score": 1}]
        rules.append({"id": f"r{i}", "when": when, "then": then})
    doc: dict[str, Any] = {"apiVersion": "fieldloop/v1", "kind": kind, "rules": rules}
    if kind == "PriorityRules":
        doc["bands"] = [{"band": "P4"}]
    ruleset = load_ruleset(Path("split.yaml"), json.dumps(doc, ensure_ascii=False))
    compiled = engine.load(ruleset)
    per_rule = Counter(p.rule_id for p in compiled.pieces)
    assert len(per_rule) == len(rules)
    assert len(compiled.pieces) > 3 * len(rules) and max(per_rule.values()) >= 16
    bad = _disagreements(engine, ruleset, corpus)
    assert not bad, f"{len(bad)} disagree:\n" + "\n".join(bad[:10])
    assert {rid for f in corpus for rid in matching(ruleset, f)}  # not all empty


def test_the_shipped_rules_agree_on_the_shipped_and_random_corpus(
    engine: DurableEngine, corpus: list[dict[str, Any]]
) -> None:
    tickets = parse_yaml(REPO / "tests" / "data" / "rules_corpus.yaml")["tickets"]
    shipped = [normalise_facts(dict(t["input"])) for t in tickets]
    for name in ("classification.yaml", "priority.yaml"):
        ruleset = load_ruleset(REPO / "rules" / name)
        bad = _disagreements(engine, ruleset, shipped + corpus)
        assert not bad, f"{name}: {len(bad)} disagree:\n" + "\n".join(bad[:10])


def test_long_values_and_odd_numbers_agree(engine: DurableEngine) -> None:
    """Strings past durable's 16-bit lengths, floats Python writes with an exponent."""
    doc = {
        "apiVersion": "fieldloop/v1",
        "kind": "PriorityRules",
        "rules": [
            {"id": "eq", "when": {"title": {"eq": "leak"}}, "then": [{"add_score": 1}]},
            {"id": "ne", "when": {"title": {"ne": "leak"}}, "then": [{"add_score": 1}]},
            {"id": "in", "when": {"title": {"in": ["leak", "x"]}}, "then": [{"add_score": 1}]},
            {"id": "sub", "when": {"title": {"contains_any": ["水"]}}, "then": [{"add_score": 1}]},
            {"id": "tiny", "when": {"fault.value": {"gt": 1e-07}}, "then": [{"add_score": 1}]},
            {"id": "huge", "when": {"fault.value": {"lte": 1e16}}, "then": [{"add_score": 1}]},
        ],
        "bands": [{"band": "P4"}],
    }
    ruleset = load_ruleset(Path("odd.yaml"), json.dumps(doc))
    corpus = [
        {"title": "leak" * 20_000},  # 80,000 bytes: 80,000 mod 65,536 < len("leak")? no matter
        {"title": "leak" + "\n" * 16_384},  # 32,772 characters, 65,540 bytes once escaped
        {"title": "leak" + "😀" * 17_000 + "水"},
        {"title": "leak"},
        {"fault.value": 1e-08},
        {"fault.value": 2e-07},
        {"fault.value": 1e16},
        {"fault.value": 1.0000000000000002e16},
        {"fault.value": -3e-300},
    ]
    bad = _disagreements(engine, ruleset, [normalise_facts(f) for f in corpus])
    assert not bad, "\n".join(b[:300] for b in bad)


# --- supervision ----------------------------------------------------------------------------


def test_a_killed_worker_gives_engine_unavailable_once_then_recovers() -> None:
    ruleset = random_rules(11, 20, "PriorityRules")
    facts = random_facts(12, 50)
    with DurableEngine() as engine:
        engine.load(ruleset)
        assert engine.matching(ruleset, facts[0]) == matching(ruleset, facts[0])
        pid = engine.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        stat = Path(f"/proc/{pid}/stat")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # until it is dead (a zombie, till the engine reaps it)
            try:
                if stat.read_text().split(") ")[1].startswith("Z"):
                    break
            except FileNotFoundError:
                break
            time.sleep(0.01)
        with pytest.raises(EngineUnavailable, match="SIGKILL"):
            engine.matching(ruleset, facts[1])
        # the next call starts a worker and loads the rulesets again
        for f in facts:
            assert engine.matching(ruleset, f) == matching(ruleset, f)
        assert engine.worker_pid not in (None, pid)


def test_a_call_that_times_out_stops_the_worker_then_the_engine_recovers() -> None:
    ruleset = random_rules(13, 20, "ClassificationRules", catch_all=True)
    facts = random_facts(14, 20)
    with DurableEngine() as engine:
        engine.load(ruleset)
        pid = engine.worker_pid
        engine.timeout = 0  # and a request that takes the worker milliseconds
        slow = normalise_facts({"text": "漏" * 5_000_000, "fault.value": 1})
        with pytest.raises(EngineUnavailable, match="no answer within"):
            engine.matching(ruleset, slow)
        engine.timeout = 5
        for f in facts:
            assert engine.matching(ruleset, f) == matching(ruleset, f)[:1]
        assert engine.worker_pid != pid


def test_bad_facts_are_a_value_error_and_the_worker_stays() -> None:
    ruleset = random_rules(15, 10, "PriorityRules")
    with DurableEngine() as engine:
        doc_rules = compile_ruleset(ruleset)
        engine.load(ruleset)
        pid = engine.worker_pid
        field = next(f for f in doc_rules.fields if FIELDS[f].type is FieldType.number)
        with pytest.raises(ValueError, match="takes a number"):
            engine.matching(ruleset, {field: "12"})
        assert engine.worker_pid == pid


class _FailingRuntime(Runtime):
    def _record(self, piece: str) -> None:
        raise RuntimeError("boom")


def test_an_action_that_raises_inside_durable_is_an_error() -> None:
    """durable-rules catches it into the state's `exception`: the runtime reads it after the
    post, reports it, and clears it so the next post is clean."""
    doc = {
        "apiVersion": "fieldloop/v1",
        "kind": "PriorityRules",
        "rules": [
            {"id": "urgent", "when": {"urgency": {"eq": "high"}}, "then": [{"add_score": 1}]}
        ],
        "bands": [{"band": "P4"}],
    }
    compiled = compile_ruleset(load_ruleset(Path("p.yaml"), json.dumps(doc)))
    runtime = _FailingRuntime()
    runtime.load(compiled)
    with pytest.raises(ActionError, match="boom"):
        runtime.match(compiled.name, {"urgency": "high"})
    assert runtime.match(compiled.name, {"urgency": "low"}) == []  # fires nothing: no error
    state = runtime._rulesets[compiled.name][1].get_state(SID)
    assert "exception" not in state


# --- durable's limits -----------------------------------------------------------------------


def _many_rules(kind: str, n: int) -> RuleSet:
    rnd = random.Random(21)
    rules = []
    for i in range(n):
        shape = i % 4
        if shape == 0:  # all of these can match one ticket at once
            when: dict[str, Any] = {"fault.value": {"gt": i / 10}}
        elif shape == 1:
            when = {"text": {"contains_any": [f"w{i}", rnd.choice(WORDS)]}}
        elif shape == 2:
            when = {"not": {"asset.id": {"eq": f"a{i}"}}}
        else:
            when = {
                "all": [{"tags": {"contains_any": [rnd.choice(TAGS)]}}, {"hour": {"gte": i % 24}}]
            }
        then = [{"set_category": "c"}] if kind == "ClassificationRules" else [{"add_score": 1}]
        rules.append({"id": f"r{i}", "when": when, "then": then})
    doc: dict[str, Any] = {"apiVersion": "fieldloop/v1", "kind": kind, "rules": rules}
    if kind == "PriorityRules":
        doc["bands"] = [{"band": "P4"}]
    return load_ruleset(Path(f"many-{kind}.yaml"), json.dumps(doc))


@pytest.mark.timeout(180)  # 1,200 fact sets through 1,100 rules in durable-rules: CPU-bound
@pytest.mark.parametrize("kind", ["PriorityRules", "ClassificationRules"])
def test_over_1024_rules_and_messages_stay_within_durables_limits(kind: str) -> None:
    """1,100 rules and 1,200 tickets (tens of thousands of posts) to one ruleset: one lane
    (one state), every message consumed (events) or retracted (facts), so nothing accumulates.
    In this process, to look at the lane's state afterwards."""
    ruleset = _many_rules(kind, 1100)
    compiled = compile_ruleset(ruleset)
    assert len(compiled.chunks) > 1  # the rules are spread over chunks
    corpus = random_facts(22, 1200)
    for f in corpus[::20]:  # hundreds of rules true at once
        f["fault.value"] = 1000
        f["tags"] = tuple(TAGS)
    runtime = Runtime()
    runtime.load(compiled)
    for facts in corpus:
        assert runtime.match(compiled.name, facts) == _expected(ruleset, facts)
    durable = runtime._rulesets[compiled.name][1]
    assert durable.get_facts(SID) == []
    assert durable.get_pending_events(SID) == []
