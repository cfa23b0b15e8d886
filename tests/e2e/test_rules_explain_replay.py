"""`fieldloop rules explain` and `fieldloop rules replay --db` against tickets central decided,
on SQLite and PostgreSQL; neither writes anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from support import add_people

from central.api.app import create_app
from central.settings import Settings
from central.storage.db import make_engine, session_factory
from central.storage.models import Ticket, TicketDecision, TicketEvent
from fieldloop.cli import main

pytestmark = pytest.mark.integration

CLASSIFICATION = """\
apiVersion: fieldloop/v1
kind: ClassificationRules
rules:
  - id: water.leak
    description: leaks / 漏水
    when: {text: {contains_any: [漏水, leak]}}
    then: [{set_category: plumbing}, {set_queue: facilities}]
  - id: catch-all
    then: [{set_category: general}, {set_queue: dispatch}]
"""
PRIORITY = """\
apiVersion: fieldloop/v1
kind: PriorityRules
rules:
  - id: urgent
    when: {urgency: {in: [critical, high]}}
    then: [{add_score: 60}]
bands:
  - {band: P2, min: 50}
  - {band: P4, below: 50}
"""


def rules(d: Path, classification: str) -> Path:
    d.mkdir()
    (d / "classification.yaml").write_text(classification, encoding="utf-8")
    (d / "priority.yaml").write_text(PRIORITY, encoding="utf-8")
    return d


def report(description: str, urgency: str = "high") -> dict[str, str]:
    return {"location": "Block 1", "problem_type": "other", "urgency": urgency,
            "description": description, "reporter": "Li", "contact": "13800000000"}  # fmt: skip


def counts(db_url: str) -> tuple[int, int, int]:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as s:
            return tuple(  # type: ignore[return-value]
                s.execute(select(func.count()).select_from(m)).scalar_one()
                for m in (Ticket, TicketEvent, TicketDecision)
            )
    finally:
        engine.dispose()


def test_explain_and_replay(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = rules(tmp_path / "live", CLASSIFICATION)
    app = create_app(Settings(db_url=db_url, broker_url=None, rules_dir=live))
    with TestClient(app) as client:
        who = add_people(app.state.sessions)["cust.chen"]
        ids = [
            client.post("/tickets", json=report(text, urgency), headers=who).json()["ticket"]["id"]
            for text, urgency in (("卫生间漏水", "high"), ("门锁坏了", "low"), ("roof leak", "low"))
        ]
    before = counts(db_url)

    assert main(["rules", "explain", str(ids[0]), "--db", db_url, "--rules", str(live)]) == 0
    out = capsys.readouterr().out
    assert "category plumbing, queue facilities, priority P2 (rules)" in out
    assert "rule water.leak: text contains any 漏水, leak" in out
    assert "rule urgent: urgency in critical, high" in out
    assert '"description": "卫生间漏水"' in out

    # the planner narrows the leak rule to Chinese words only
    candidate = rules(tmp_path / "cand", CLASSIFICATION.replace("[漏水, leak]", "[漏水]"))
    code = main(
        ["rules", "replay", "--base", str(live), "--candidate", str(candidate), "--db", db_url,
         "--fail-if", "changed > 10%"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert (
        f"CHANGED ticket #{ids[2]}: category plumbing -> general, queue facilities -> dispatch"
        "  [rule water.leak -> catch-all;" in out
    )
    assert "replay: 3 recorded, 1 changed (33.3%; category 1, queue 1)" in out
    assert "FAILED: changed > 10%" in out
    assert main(["rules", "replay", "--base", str(live), "--candidate", str(live),
                 "--db", db_url, "--fail-if", "changed > 0"]) == 0  # fmt: skip
    assert counts(db_url) == before  # nothing written

    assert main(["rules", "explain", "999", "--db", db_url]) == 2
    assert main(["rules", "replay", "--base", str(live), "--db", db_url, "--events", "x"]) == 2
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "classification.yaml").write_text("kind: [", encoding="utf-8")
    assert main(["rules", "replay", "--base", str(bad), "--db", db_url]) == 2
    assert "a rule file is wrong" in capsys.readouterr().err
