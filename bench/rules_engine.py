"""Classification + priority decisions per second: our durable-rules runtime against raw
durable-rules and the reference evaluator, in the same run.

A decision is what central makes of a new ticket: classify it (first-hit), add the category,
queue and tags to its facts, prioritise it (collect, then bands). Three ways, over the same
generated corpus of bilingual tickets and the same two rule files (a classification and a
priority file like the shipped ones, written by the bench into a temporary directory):

* ours: ``central.rules.worker.DurableEngine`` -- the compiled rulesets in the supervised
  worker process: a pipe round trip per ruleset, a message per chunk, the check for swallowed
  action exceptions after each post;
* raw durable-rules: the same compiled rulesets registered with ``durable.engine.Host`` in this
  process (its timer threads off, as we use no timers), the same messages (facts encoded, atoms
  computed in Python) posted with ``Host.post`` / ``assert_fact`` + ``retract_fact``, the rules
  that fired collected by their actions; no worker, no pipe, no checks;
* the reference evaluator: ``fieldloop.rules.evaluate`` in plain Python.

All three must reach the same decisions (checked; this is also the warm-up). In each round
the three take turns every 50 tickets, so all see the same machine load; the figure per way
is the median round. Target: ours / raw >= 0.5.

    .venv/bin/python bench/rules_engine.py [--quick] [--tickets N] [--rounds R]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from central.rules.compile import SID, CompiledRuleset, chunk_message, compile_ruleset, encode_facts
from central.rules.worker import DurableEngine
from fieldloop.rules.conditions import holds, normalise_facts
from fieldloop.rules.evaluate import (
    Classification,
    Priority,
    decide_classification,
    decide_priority,
    matching,
)
from fieldloop.rules.files import RuleSet, load_ruleset

TARGET = 0.5
SLICE = 50  # tickets per turn when the ways alternate

CLASSIFICATION = """\
apiVersion: fieldloop/v1
kind: ClassificationRules
rules:
  - id: gas.leak
    when: {text: {contains_any: [燃气泄漏, 煤气味, 燃气味, gas leak, smell of gas]}}
    then: [{set_category: gas}, {set_queue: emergency}, {set_skills: [{skill: gas, level: 3}]},
           {add_tags: [hazard]}]
  - id: fire
    when: {text: {contains_any: [着火, 冒烟, 起火, on fire, smoke]}}
    then: [{set_category: fire}, {set_queue: emergency}, {add_tags: [hazard]}]
  - id: electrical.hazard
    when:
      any:
        - text: {contains_any: [漏电, 短路, 触电, electric shock, short circuit]}
        - fault.code: {in: [elec-leak, elec-short]}
    then: [{set_category: electrical}, {set_queue: emergency}, {add_tags: [hazard]}]
  - id: lift.trapped
    when:
      all:
        - text: {contains_any: [电梯, lift, elevator]}
        - text: {contains_any: [困, trapped, stuck]}
    then: [{set_category: lift}, {set_queue: emergency}, {add_tags: [hazard, rescue]}]
  - id: iot.chiller
    when: {all: [{source: {eq: iot}}, {asset.class: {in: [chiller, ahu]}}]}
    then: [{set_category: hvac}, {set_queue: facilities}, {add_tags: [iot]}]
  - id: iot.pump
    when: {all: [{source: {eq: iot}}, {fault.code: {matches: "^lp-"}}]}
    then: [{set_category: plumbing}, {set_queue: facilities}, {add_tags: [iot]}]
  - id: hvac.leak
    when:
      all:
        - text: {contains_any: [空调, aircon, air conditioner]}
        - text: {contains_any: [漏水, 滴水, dripping, leaking]}
    then: [{set_category: hvac}, {set_queue: facilities}]
  - id: water.leak
    when:
      all:
        - any:
            - text: {contains_any: [漏水, 渗水, 爆管, water leak, leaking, burst pipe]}
            - problem_type: {in: [plumbing, 给排水]}
        - not: {text: {contains_any: [已经不漏, no longer leaking]}}
    then: [{set_category: plumbing}, {set_queue: facilities}, {add_tags: [water_damage]}]
  - id: hvac
    when:
      any:
        - text: {contains_any: [空调, 不制冷, 暖气, aircon, no cooling, no heat]}
        - problem_type: {eq: hvac}
    then: [{set_category: hvac}, {set_queue: facilities}]
  - id: appliance
    when: {text: {contains_any: [冰箱, 洗衣机, 热水器, fridge, washing machine, water heater]}}
    then: [{set_category: appliance}, {set_queue: home}]
  - id: lighting
    when:
      any:
        - text: {matches: "灯.{0,4}(不亮|坏)"}
        - text: {contains_any: [light out, bulb]}
    then: [{set_category: lighting}, {set_queue: facilities}]
  - id: noise
    when: {all: [{text: {contains_any: [噪音, 吵, noise, noisy]}}, {not: {source: {eq: iot}}}]}
    then: [{set_category: noise}, {set_queue: property}]
  - id: catch-all
    then: [{set_category: general}, {set_queue: dispatch}]
"""

PRIORITY = """\
apiVersion: fieldloop/v1
kind: PriorityRules
rules:
  - id: hazard
    when: {tags: {contains_any: [hazard]}}
    then: [{add_score: 60}, {set_priority: P1}]
  - id: rescue
    when: {tags: {contains_any: [rescue]}}
    then: [{add_score: 30}]
  - id: urgent
    when: {urgency: {in: [critical, high]}}
    then: [{add_score: 30}]
  - id: low
    when: {urgency: {eq: low}}
    then: [{add_score: -10}]
  - id: critical.asset
    when: {asset.criticality: {in: [high, critical]}}
    then: [{add_score: 20}]
  - id: vip
    when: {customer.tier: {eq: vip}}
    then: [{add_score: 15}]
  - id: reopened
    when: {reopened: {eq: true}}
    then: [{add_score: 15}]
  - id: after.hours
    when: {any: [{hour: {lt: 7}}, {hour: {gte: 20}}]}
    then: [{add_score: 10}]
  - id: weekend
    when: {weekday: {in: [6, 7]}}
    then: [{add_score: 5}]
  - id: hot.reading
    when: {all: [{fault.value: {gt: 95.5}}, {fault.severity: {in: [critical, major]}}]}
    then: [{add_score: 20}]
  - id: water.damage
    when: {all: [{category: {eq: plumbing}}, {not: {tags: {contains_any: [hazard]}}}]}
    then: [{add_score: 10}]
  - id: no.asset
    when: {all: [{asset.id: {exists: false}}, {not: {source: {eq: iot}}}]}
    then: [{add_score: 0}]
bands:
  - {band: P1, min: 80}
  - {band: P2, min: 50, below: 80}
  - {band: P3, min: 20, below: 50}
  - {band: P4, below: 20}
"""

ZH = ["燃气泄漏", "煤气味", "卫生间漏水", "天花板渗水", "空调不制冷", "空调滴水", "电梯困人",
      "电梯停了", "插座短路", "冰箱不冷", "热水器坏了", "楼道灯不亮", "楼上噪音太吵", "门禁坏了",
      "已经不漏水了", "暖气不热"]  # fmt: skip
EN = ["gas leak in kitchen", "smell of gas", "water leak under sink", "burst pipe", "aircon is "
      "dripping", "no cooling", "people trapped in lift", "lift stuck", "short circuit", "fridge "
      "broken", "light out in corridor", "noisy neighbours", "door entry broken", "no longer "
      "leaking", "no heat"]  # fmt: skip
FILLER = ["，请尽快处理", "。谢谢", " please help", " since this morning", "！！", "\n3楼 302室",
          " (urgent)", "", ""]  # fmt: skip


def corpus(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        raw: dict[str, Any] = {}
        if rnd.random() < 0.2:  # an IoT ticket
            raw |= {
                "source": "iot",
                "asset.id": f"a-{rnd.randint(1, 50)}",
                "asset.class": rnd.choice(["chiller", "ahu", "pump", "meter"]),
                "asset.criticality": rnd.choice(["low", "medium", "high", "critical"]),
                "fault.code": rnd.choice(["ht-01", "lp-02", "lp-07", "elec-short", "comm-1"]),
                "fault.severity": rnd.choice(["critical", "major", "minor", "warning"]),
                "fault.value": rnd.choice([12, 95.5, 96, 101.25, 3.5e-07]),
                "title": rnd.choice(["discharge temp high", "pressure low", "排气温度过高"]),
            }
        else:
            words = ZH if rnd.random() < 0.6 else EN
            raw["title"] = rnd.choice(words) + rnd.choice(FILLER)
            raw["description"] = rnd.choice(words + FILLER) + rnd.choice(FILLER)
            raw["source"] = rnd.choice(["web", "api", "webhook"])
            if rnd.random() < 0.3:
                raw["problem_type"] = rnd.choice(["plumbing", "hvac", "给排水", "电气", "other"])
            if rnd.random() < 0.4:
                raw["asset.id"] = f"a-{rnd.randint(1, 50)}"
        raw["urgency"] = rnd.choice(["critical", "high", "medium", "low", None])
        if rnd.random() < 0.15:
            raw["customer.tier"] = rnd.choice(["vip", "gold"])
        if rnd.random() < 0.1:
            raw["reopened"] = True
        raw["hour"] = rnd.randint(0, 23)
        raw["weekday"] = rnd.randint(1, 7)
        out.append(normalise_facts(raw))
    return out


Matcher = Callable[[RuleSet, Mapping[str, Any]], list[str]]


def decide(
    match: Matcher, cls: RuleSet, pri: RuleSet, facts: Mapping[str, Any]
) -> tuple[Classification, Priority]:
    """Classification, then priority with its category, queue and tags, as central does."""
    c = decide_classification(cls, match(cls, facts)[:1])
    facts = dict(facts)
    for name, value in (("category", c.category), ("queue", c.queue)):
        if value is not None:
            facts[name] = value
    if c.tags:
        facts["tags"] = c.tags
    return c, decide_priority(pri, match(pri, facts))


class RawDurable:
    """The compiled rulesets in durable-rules' own Host, posted to directly in this process."""

    def __init__(self, rulesets: list[RuleSet]) -> None:
        from durable import engine  # only here and in the worker: never in the API process

        class QuietHost(engine.Host):  # type: ignore[misc]
            def _run(self) -> None:  # no timer threads: we use no timers
                pass

        self._engine = engine
        self._host = QuietHost()
        self._compiled: dict[str, CompiledRuleset] = {}
        self._fired: list[str] = []
        self._id = 0
        for ruleset in rulesets:
            compiled = compile_ruleset(ruleset)
            definition = {}
            for name, rule in compiled.definition.items():
                definition[name] = {**rule, "run": self._action(name)}
            self._host.set_rulesets({compiled.name: definition})
            self._compiled[ruleset.version] = compiled

    def _action(self, piece: str) -> Callable[[Any], None]:
        def run(c: Any) -> None:
            self._fired.append(piece)

        return run

    def matching(self, ruleset: RuleSet, facts: Mapping[str, Any]) -> list[str]:
        compiled = self._compiled[ruleset.version]
        base = encode_facts(compiled, facts)
        atoms: dict[int, bool] = {}

        def atom(i: int) -> bool:
            if i not in atoms:
                atoms[i] = holds(compiled.atoms[i], facts)
            return atoms[i]

        hits: set[str] = set()
        for chunk in compiled.chunks:
            message = chunk_message(compiled, chunk, base, atom)
            self._id += 1
            message["id"], message["sid"] = self._id, SID
            self._fired = []
            try:
                if compiled.mode == "first_hit":
                    self._host.post(compiled.name, message)
                else:
                    self._host.assert_fact(compiled.name, message)
                    self._host.retract_fact(compiled.name, message)
            except self._engine.MessageNotHandledException:
                pass
            fired = [compiled.rule_of_piece[p] for p in self._fired]
            if fired and compiled.mode == "first_hit":
                return [min(fired, key=compiled.position.__getitem__)]
            hits.update(fired)
        return sorted(hits, key=compiled.position.__getitem__)


def run_round(
    ways: dict[str, Matcher], cls: RuleSet, pri: RuleSet, tickets: list[dict[str, Any]]
) -> dict[str, float]:
    """Decisions/s per way over ``tickets``, the ways taking turns every SLICE tickets (in a
    rotating order) so that all see the same moments of machine load."""
    elapsed = dict.fromkeys(ways, 0.0)
    names = list(ways)
    for k, at in enumerate(range(0, len(tickets), SLICE)):
        part = tickets[at : at + SLICE]
        for name in names[k % len(names) :] + names[: k % len(names)]:
            match = ways[name]
            start = time.perf_counter()
            for facts in part:
                decide(match, cls, pri, facts)
            elapsed[name] += time.perf_counter() - start
    return {name: len(tickets) / t for name, t in elapsed.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer tickets and rounds")
    p.add_argument("--tickets", type=int, default=None, help="tickets per round (2000)")
    p.add_argument("--rounds", type=int, default=None, help="measured rounds per way (5)")
    args = p.parse_args(argv)
    n = args.tickets or (300 if args.quick else 2000)
    rounds = args.rounds or (3 if args.quick else 5)

    with tempfile.TemporaryDirectory(prefix="rules-bench-") as tmp:
        d = Path(tmp)
        (d / "classification.yaml").write_text(CLASSIFICATION, encoding="utf-8")
        (d / "priority.yaml").write_text(PRIORITY, encoding="utf-8")
        cls = load_ruleset(d / "classification.yaml")
        pri = load_ruleset(d / "priority.yaml")
    tickets = corpus(n)
    raw = RawDurable([cls, pri])
    with DurableEngine() as ours:
        ours.load(cls)
        ours.load(pri)
        ways: dict[str, Matcher] = {
            "ours (DurableEngine)": ours.matching,
            "raw durable-rules": raw.matching,
            "reference evaluator": matching,
        }
        # the same decisions every way (the reference's first hit is its classification)
        decided = {name: [decide(m, cls, pri, f) for f in tickets] for name, m in ways.items()}
        first = next(iter(decided.values()))
        for name, decisions in decided.items():
            if decisions != first:
                wrong = sum(a != b for a, b in zip(decisions, first, strict=True))
                print(f"FAILED: {name} differs from the others on {wrong} tickets")
                return 1
        categories = {c.category for c, _ in first}
        bands = {p.priority for _, p in first}
        rates: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(rounds):
            for name, rate in run_round(ways, cls, pri, tickets).items():
                rates[name].append(rate)
        worker = ours.worker_pid

    print(
        f"{n} tickets x {rounds} rounds; classification {len(cls.rules)} rules "
        f"({len(categories)} categories hit), priority {len(pri.rules)} rules "
        f"(bands {sorted(b for b in bands if b)}); worker pid {worker}"
    )
    med = {name: statistics.median(r) for name, r in rates.items()}
    for name, r in rates.items():
        print(
            f"  {name:22} {med[name]:9.0f} decisions/s  (rounds {', '.join(f'{x:.0f}' for x in r)})"
        )
    ratio = med["ours (DurableEngine)"] / med["raw durable-rules"]
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(f"  ours / raw durable-rules = {ratio:.2f} ({verdict} the target of {TARGET})")
    vs_reference = med["ours (DurableEngine)"] / med["reference evaluator"]
    print(f"  ours / reference evaluator = {vs_reference:.2f}")
    return 0 if ratio >= TARGET else 2


if __name__ == "__main__":
    sys.exit(main())
