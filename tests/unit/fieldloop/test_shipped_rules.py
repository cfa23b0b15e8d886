"""The shipped decision rules (rules/classification.yaml, rules/priority.yaml) against the
checked-in corpus of realistic tickets (tests/data/rules_corpus.yaml), and each file's own
``tests:``, all through the reference evaluator.

Each ticket is classified, then prioritised with the classification's category, queue and tags
added to its facts, as central does. A failure prints one table of every miss."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from fieldloop.rules.conditions import normalise_facts
from fieldloop.rules.evaluate import (
    classify,
    decide_classification,
    decide_priority,
    matching,
    prioritise,
)
from fieldloop.rules.files import RuleSet, band_for, load_ruleset
from fieldloop.yamlfile import parse_yaml

REPO = Path(__file__).resolve().parents[3]
RULES = REPO / "rules"
CORPUS = REPO / "tests" / "data" / "rules_corpus.yaml"

#: what the corpus must cover (issue 7: HVAC, leaks, electrical, gas, lifts, IoT, appliances,
#: property management)
REQUIRED_CATEGORIES = {
    "gas", "fire", "fire_safety", "electrical", "lift", "water_leak", "plumbing", "hvac",
    "heating", "appliance", "access", "lighting", "pest_control", "cleaning", "noise",
    "network", "building", "enquiry", "preventive_maintenance", "communication",
    "sensor_fault", "compressed_air", "equipment_fault", "general",
}  # fmt: skip
EXPECT_KEYS = {"rule", "category", "queue", "priority", "tags", "skills", "score", "suppressed"}
LANGS = {"zh", "en", "mixed", "iot"}


# --- loading --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classification() -> RuleSet:
    return load_ruleset(RULES / "classification.yaml")


@pytest.fixture(scope="module")
def priority() -> RuleSet:
    return load_ruleset(RULES / "priority.yaml")


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, Any]]:
    data = parse_yaml(CORPUS)
    return [_plain(t) for t in data["tickets"]]


def _plain(value: Any) -> Any:
    """ruamel's commented containers as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- deciding, as central does ----------------------------------------------------------------


def decide(cl: RuleSet, pr: RuleSet, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Classification, then priority with category, queue and tags fed in as facts."""
    c = classify(cl, normalise_facts(raw))
    more = {"category": c.category, "queue": c.queue, "tags": list(c.tags)}
    facts = normalise_facts({**raw, **{k: v for k, v in more.items() if v is not None}})
    p = prioritise(pr, facts)
    return {
        "rule": c.rule,
        "category": c.category,
        "queue": c.queue,
        "tags": list(c.tags),
        "skills": [f"{s.skill}:{s.level}" for s in c.skills],
        "suppressed": c.suppressed is not None,
        "priority": p.priority,
        "score": p.score,
        "rules": list(p.rules),
        "forced_by": p.forced_by,
    }


def _same(want: Any, got: Any) -> bool:
    """As ``fieldloop rules test`` compares: lists as sets, text ignoring case."""
    if isinstance(want, list):
        return {str(w).casefold() for w in want} == {str(g).casefold() for g in got}
    if isinstance(want, str) and isinstance(got, str):
        return want.strip().casefold() == got.casefold()
    return want == got


def _skills(want: list[str]) -> list[str]:
    return [s if ":" in s else f"{s}:1" for s in want]  # "gas" means level 1, as in set_skills


def misses(expect: Mapping[str, Any], got: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    wrong = []
    for key, want in expect.items():
        if key == "skills":
            want = _skills(want)
        if not _same(want, got[key]):
            wrong.append((key, want, got[key]))
    return wrong


# --- a readable table -----------------------------------------------------------------------


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _cut(text: str, width: int) -> str:
    out, used = [], 0
    for ch in text.replace("\n", " / "):
        w = _width(ch)
        if used + w > width - 1:
            return "".join(out) + "…"
        out.append(ch)
        used += w
    return "".join(out)


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return "-" if value is None else str(value)


def table(header: list[str], rows: list[list[str]], widths: list[int]) -> str:
    def line(cells: list[str]) -> str:
        parts = []
        for cell, w in zip(cells, widths, strict=True):
            text = _cut(cell, w)
            parts.append(text + " " * (w - _width(text)))
        return " | ".join(parts).rstrip()

    out = [line(header), "-+-".join("-" * w for w in widths)]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def _text(raw: Mapping[str, Any]) -> str:
    words = [str(raw[k]) for k in ("title", "description") if raw.get(k)]
    return " / ".join(words) or str(raw.get("fault.code", ""))


def _why(got: Mapping[str, Any]) -> str:
    floor = f"; floor {got['priority']} by {got['forced_by']}" if got["forced_by"] else ""
    return f"rule {got['rule']}{floor}; score {got['score']} from " + (
        ", ".join(got["rules"]) or "no rule"
    )


# --- the corpus -----------------------------------------------------------------------------


def test_corpus_is_large_broad_and_well_formed(
    corpus: list[dict[str, Any]], classification: RuleSet
) -> None:
    ids = [t["id"] for t in corpus]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    rule_ids = {r.id for r in classification.rules}
    for t in corpus:
        assert set(t) <= {"id", "lang", "input", "expect", "note"}, t["id"]
        assert t["lang"] in LANGS, t["id"]
        assert set(t["expect"]) <= EXPECT_KEYS, t["id"]
        assert {"category", "queue", "priority"} <= set(t["expect"]), t["id"]
        if "rule" in t["expect"]:
            assert t["expect"]["rule"] in rule_ids, t["id"]
        normalise_facts(t["input"])  # only registered field names
    langs = Counter(t["lang"] for t in corpus)
    assert len(corpus) >= 120, len(corpus)
    assert langs["zh"] >= 60, langs
    assert langs["en"] >= 40, langs
    assert langs["iot"] >= 10, langs
    categories = {t["expect"]["category"] for t in corpus}
    assert categories >= REQUIRED_CATEGORIES, REQUIRED_CATEGORIES - categories
    assert {t["expect"]["priority"] for t in corpus} == {"P1", "P2", "P3", "P4"}
    assert sum("rule" in t["expect"] for t in corpus) >= 30
    prios = Counter(t["expect"]["priority"] for t in corpus)
    cats = Counter(t["expect"]["category"] for t in corpus)
    print(f"\n{len(corpus)} tickets; by language {dict(sorted(langs.items()))}")  # pytest -s
    print("by priority", dict(sorted(prios.items())))
    print("by category", dict(sorted(cats.items())))


def test_corpus_is_classified_and_prioritised_as_expected(
    corpus: list[dict[str, Any]], classification: RuleSet, priority: RuleSet
) -> None:
    rows = []
    for t in corpus:
        got = decide(classification, priority, t["input"])
        for key, want, have in misses(t["expect"], got):
            rows.append([t["id"], _text(t["input"]), key, _show(want), _show(have), _why(got)])
    if rows:
        header = ["ticket", "text", "field", "expected", "got", "why"]
        widths = [16, 44, 9, 20, 20, 90]
        pytest.fail(
            f"{len(rows)} miss(es) in {len(corpus)} corpus tickets:\n"
            + table(header, rows, widths),
            pytrace=False,
        )


def test_every_classification_rule_decides_some_ticket(
    corpus: list[dict[str, Any]], classification: RuleSet
) -> None:
    """No rule is dead weight or shadowed by an earlier one: each decides at least one ticket
    of the corpus or of the file's own tests."""
    inputs = [t["input"] for t in corpus]
    inputs += [t.input for t in classification.spec.tests] if classification.spec else []
    deciding = {classify(classification, normalise_facts(raw)).rule for raw in inputs}
    unused = [r.id for r in classification.rules if r.id not in deciding]
    assert not unused, f"rules that decide no ticket: {unused}"


# --- the files' own tests (inline: the shared runner is fieldloop.rules.testing) -------------


def _file_test_rows(ruleset: RuleSet) -> tuple[int, list[list[str]]]:
    assert ruleset.spec is not None
    rows = []
    for t in ruleset.spec.tests:
        hits = matching(ruleset, normalise_facts(t.input))
        expect = {k: getattr(t.expect, k) for k in t.expect.model_fields_set}
        if ruleset.kind == "ClassificationRules":
            c = decide_classification(ruleset, hits[:1])
            got = {
                "rule": c.rule,
                "category": c.category,
                "queue": c.queue,
                "skills": [f"{s.skill}:{s.level}" for s in c.skills],
                "tags": list(c.tags),
                "suppressed": c.suppressed is not None,
            }
            why = f"rule {c.rule}"
        else:
            p = decide_priority(ruleset, hits)
            got = {"priority": p.priority, "score": p.score, "rules": list(p.rules)}
            why = f"score {p.score} from {', '.join(p.rules) or 'none'}"
        rows.extend(
            [t.name, key, _show(want), _show(have), why] for key, want, have in misses(expect, got)
        )
    return len(ruleset.spec.tests), rows


@pytest.mark.parametrize("name", ["classification", "priority"])
def test_the_files_own_tests_pass(name: str, request: pytest.FixtureRequest) -> None:
    ruleset: RuleSet = request.getfixturevalue(name)
    count, rows = _file_test_rows(ruleset)
    assert count >= 5, f"{name}.yaml should carry a few tests"
    if rows:
        pytest.fail(
            f"{len(rows)} miss(es) in {name}.yaml's {count} tests:\n"
            + table(["test", "field", "expected", "got", "why"], rows, [50, 9, 24, 24, 60]),
            pytrace=False,
        )


def test_priority_bands_cover_every_score_once(priority: RuleSet) -> None:
    for score in range(-200, 400):
        found = [b.band for b in priority.bands if band_for((b,), score)]
        assert len(found) == 1, (score, found)
    assert band_for(priority.bands, 80) == "P1"
    assert band_for(priority.bands, 79) == "P2"
