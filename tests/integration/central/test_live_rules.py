"""The planners' decision rules in central: tickets from every channel are classified and
prioritised by rules/*.yaml, each decision kept with its rule ids and versions; a bad edit is
rejected whole while the live set stays; a good edit goes live without a restart; a hand-set
priority is never recomputed. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from support import add_people

from central.api.app import create_app
from central.ingest.events import ingest
from central.services.audit import verify
from central.settings import Settings
from fieldloop.messages import Event, EventKind, Severity

pytestmark = pytest.mark.integration

CLASSIFICATION = """\
apiVersion: fieldloop/v1
kind: ClassificationRules
rules:
  - id: test.ticket
    when: {description: {in: [test, 测试]}}
    then: [{set_category: test}, {suppress: {reason: "test ticket / 测试工单"}}]
  - id: gas.leak
    when: {text: {contains_any: [燃气泄漏, 煤气味, gas leak]}}
    then: [{set_category: gas}, {set_queue: emergency}, {add_tags: [hazard]},
           {set_skills: [{skill: gas, level: 3}]}]
  - id: chiller.fault
    when: {fault.code: {matches: "^chiller\\\\."}}
    then: [{set_category: hvac}, {set_queue: hvac}]
  - id: water.leak
    when: {text: {contains_any: [漏水, leak]}}
    then: [{set_category: plumbing}, {set_queue: facilities}]
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
  - id: urgent
    when: {urgency: {in: [critical, high]}}
    then: [{add_score: 30}]
  - id: iot.major
    when: {fault.severity: {in: [critical, major]}}
    then: [{add_score: 55}]
bands:
  - {band: P1, min: 80}
  - {band: P2, min: 50, below: 80}
  - {band: P3, min: 20, below: 50}
  - {band: P4, below: 20}
"""

REPORT = {
    "location": "Block 3, flat 1202",
    "problem_type": "other",
    "urgency": "high",
    "description": "厨房有煤气味",
    "reporter": "Chen Jing",
    "contact": "13800000000",
}


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "classification.yaml").write_text(CLASSIFICATION, encoding="utf-8")
    (d / "priority.yaml").write_text(PRIORITY, encoding="utf-8")
    return d


@pytest.fixture(params=["durable", "reference"])
def client(db_url: str, rules_dir: Path, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    settings = Settings(
        db_url=db_url, broker_url=None, rules_dir=rules_dir, rules_engine=request.param
    )
    app = create_app(settings)
    with TestClient(app) as c:
        c.people = add_people(app.state.sessions)  # type: ignore[attr-defined]
        yield c


def h(client: TestClient, who: str) -> dict[str, str]:
    return client.people[who]  # type: ignore[attr-defined]


def test_a_report_is_classified_and_prioritised_with_the_deciding_rules(
    client: TestClient,
) -> None:
    r = client.post("/tickets", json=REPORT, headers=h(client, "cust.chen"))
    assert r.status_code == 201, r.text
    t = r.json()["ticket"]
    assert (t["category"], t["department"], t["priority"]) == ("gas", "emergency", "P1")
    sup = h(client, "sup.wang")
    decisions = client.get(f"/tickets/{t['id']}/decisions", headers=sup).json()
    assert [(d["kind"], d["rule_ids"]) for d in decisions] == [
        ("classification", ["gas.leak"]),
        ("priority", ["hazard", "urgent"]),
    ]
    assert decisions[1]["outcome"]["score"] == 90
    assert decisions[0]["facts"]["description"] == "厨房有煤气味"
    status = client.get("/rules", headers=sup).json()
    assert decisions[0]["rules_version"] == status["classification_version"]
    detail = client.get(f"/tickets/{t['id']}", headers=sup).json()
    classified = [e for e in detail["history"] if e["action"] == "classified"]
    assert classified[0]["data"]["classification"]["rule"] == "gas.leak"
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        assert verify(s).ok


def test_an_iot_ticket_is_classified_from_its_fault_code(client: TestClient) -> None:
    event = Event(
        site="plant-1", device="chiller-1", asset="CH-01", event_time=datetime.now(UTC), seq=1,
        kind=EventKind.fault_opened, rule_id="chiller.discharge_temp.high",
        title="Discharge temperature high", severity=Severity.major, metric="discharge_temp",
        value=97.0,
    )  # fmt: skip
    outcome = ingest(
        client.app.state.sessions,  # type: ignore[attr-defined]
        event,
        datetime.now(UTC),
        client.app.state.ingest_policy,  # type: ignore[attr-defined]
    )
    t = client.get(f"/tickets/{outcome.ticket_id}", headers=h(client, "sup.wang")).json()
    assert (t["category"], t["department"], t["priority"]) == ("hvac", "hvac", "P2")


def test_a_bad_edit_is_rejected_whole_and_the_live_set_stays(
    client: TestClient, rules_dir: Path
) -> None:
    admin = h(client, "admin")
    before = client.get("/rules", headers=admin).json()
    (rules_dir / "classification.yaml").write_text(
        CLASSIFICATION.replace("set_queue: facilities", "set_queu: facilities"), encoding="utf-8"
    )
    (rules_dir / "priority.yaml").write_text(PRIORITY + "  - {band: P3, min: 0}\n")
    r = client.post("/rules/reload", headers=h(client, "planner.he"))
    assert r.status_code == 422
    problems = r.json()["detail"]["problems"]
    assert any("classification.yaml:" in p and "set_queu" in p for p in problems)
    after = client.get("/rules", headers=admin).json()
    assert after["version"] == before["version"] and after["rejected"]
    # tickets are still decided by the live set
    t = client.post("/tickets", json=REPORT, headers=h(client, "cust.chen")).json()["ticket"]
    assert t["category"] == "gas"
    assert client.post("/rules/reload", headers=h(client, "eng.li")).status_code == 403


def test_a_good_edit_goes_live_without_a_restart(client: TestClient, rules_dir: Path) -> None:
    before = client.get("/rules", headers=h(client, "admin")).json()["version"]
    (rules_dir / "classification.yaml").write_text(
        CLASSIFICATION.replace("[燃气泄漏, 煤气味, gas leak]", "[燃气泄漏, gas leak]"),
        encoding="utf-8",
    )
    # the watcher notices on its own (every 2 s); no reload call
    deadline = time.monotonic() + 10
    while client.get("/rules", headers=h(client, "admin")).json()["version"] == before:
        assert time.monotonic() < deadline, "the edited rules did not go live"
        time.sleep(0.2)
    t = client.post("/tickets", json=REPORT, headers=h(client, "cust.chen")).json()["ticket"]
    assert (t["category"], t["department"]) == ("general", "dispatch")  # 煤气味 no longer gas


def test_a_hand_set_priority_is_kept(client: TestClient) -> None:
    t = client.post("/tickets", json=REPORT, headers=h(client, "cust.chen")).json()["ticket"]
    r = client.post(
        f"/tickets/{t['id']}/priority", json={"priority": "P3", "reason": "smell is old paint"},
        headers=h(client, "disp.zhao"),
    )  # fmt: skip
    assert r.status_code == 200 and r.json()["priority"] == "P3"
    r = client.post(
        f"/tickets/{t['id']}/priority", json={"priority": "P1", "reason": "x"},
        headers=h(client, "eng.li"),
    )  # fmt: skip
    assert r.status_code == 403
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        from central.storage.models import Ticket

        row = s.get(Ticket, t["id"])
        assert (row.priority, row.priority_source) == ("P3", "manual")


BAD_EDITS = {
    "a python tag": "  - id: evil\n"
    "    when: {site: {eq: !!python/object/apply:os.system [touch {marker}]}}\n"
    "    then: [{set_category: x}]\n",
    "an alias bomb": "x: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    "y: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nz: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
    "a syntax error": "  - id: broken\n    when: {text: {contains_any: [a, b}\n",
    "a wrong type": "  - id: typed\n    when: {hour: {gt: late}}\n    then: [{set_category: x}]\n",
    "an unknown action": "  - id: act\n    then: [{run_shell: ls}]\n",
}


@pytest.mark.parametrize("edit", sorted(BAD_EDITS))
def test_every_kind_of_bad_file_is_rejected_on_reload_and_runs_nothing(
    client: TestClient, rules_dir: Path, tmp_path: Path, edit: str
) -> None:
    marker = tmp_path / "pwned"
    live = client.get("/rules", headers=h(client, "admin")).json()["version"]
    text = CLASSIFICATION + BAD_EDITS[edit].replace("{marker}", str(marker))
    (rules_dir / "classification.yaml").write_text(text, encoding="utf-8")
    r = client.post("/rules/reload", headers=h(client, "admin"))
    assert r.status_code == 422, r.text
    assert all("classification.yaml:" in p for p in r.json()["detail"]["problems"])
    assert client.get("/rules", headers=h(client, "admin")).json()["version"] == live
    assert not marker.exists()
    t = client.post("/tickets", json=REPORT, headers=h(client, "cust.chen")).json()["ticket"]
    assert t["category"] == "gas"  # still decided by the live set


def test_a_10_mb_file_is_rejected_without_stopping_anything(
    client: TestClient, rules_dir: Path
) -> None:
    big = rules_dir / "priority.yaml"
    with big.open("w", encoding="utf-8") as f:
        f.write(PRIORITY)
        for _ in range(10_000):
            f.write("# " + "x" * 1021 + "\n")
    assert big.stat().st_size > 10_000_000
    r = client.post("/rules/reload", headers=h(client, "admin"))
    assert r.status_code == 422 and "1 MB" in r.text
    assert client.get("/healthz").status_code == 200


def test_a_killed_engine_worker_never_stops_tickets_being_decided(
    sqlite_url: str, rules_dir: Path
) -> None:
    settings = Settings(
        db_url=sqlite_url, broker_url=None, rules_dir=rules_dir, rules_engine="durable"
    )
    app = create_app(settings)
    with TestClient(app) as client:
        client.people = add_people(app.state.sessions)  # type: ignore[attr-defined]
        engine = app.state.live_rules.engine
        first = engine.worker_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        for _ in range(3):  # the call that finds it dead falls back; the next restarts it
            t = client.post("/tickets", json=REPORT, headers=h(client, "cust.chen")).json()
            assert (t["ticket"]["category"], t["ticket"]["priority"]) == ("gas", "P1")
        assert engine.worker_pid not in (None, first)


def test_a_suppressing_rule_cancels_the_ticket_saying_why(client: TestClient) -> None:
    body = {**REPORT, "description": "测试"}
    t = client.post("/tickets", json=body, headers=h(client, "cust.chen")).json()["ticket"]
    assert (t["state"]["key"], t["category"], t["closed_at"] is not None) == (
        "cancelled", "test", True,
    )  # fmt: skip
    detail = client.get(f"/tickets/{t['id']}", headers=h(client, "sup.wang")).json()
    last = detail["history"][-1]
    assert (last["action"], last["actor"]) == ("cancel", "system:rules")
    assert last["data"]["reason"] == "suppressed by rule test.ticket: test ticket / 测试工单"
