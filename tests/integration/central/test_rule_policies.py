"""dispatch.yaml and sla.yaml on a running central: every decided ticket gets a dispatch and an
SLA policy, pinned with the rules version; a rule's open_ticket opens a follow-up job beside it
(and never loops); ``hour`` is local time in the sites' zone. SQLite and PostgreSQL, both
engines."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from support import add_people

from central.api.app import create_app
from central.services.audit import verify
from central.settings import Settings
from central.storage.models import Notification, Ticket, TicketDecision

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]

CLASSIFICATION = """\
apiVersion: fieldloop/v1
kind: ClassificationRules
rules:
  - id: gas.leak
    when: {text: {contains_any: [燃气泄漏, 煤气味, gas leak]}}
    then:
      - set_category: gas
      - set_queue: emergency
      - add_tags: [hazard]
      - open_ticket:
          title: "燃气管道安全检查 / gas pipework inspection after {{ticket.id}}"
          category: gas
          queue: gas-company
          priority: P2
      - notify: {to: gas-company, message: "燃气泄漏 gas leak at {{location}} ({{ticket.id}})"}
  - id: catch-all
    then: [{set_category: general}, {set_queue: dispatch}]
"""

PRIORITY = """\
apiVersion: fieldloop/v1
kind: PriorityRules
rules:
  - id: hazard
    when: {tags: {contains_any: [hazard]}}
    then:
      - add_score: 90
      - escalate: {to: service_director, reason: "险情 hazard: {{ticket.title}}"}
  - id: night
    description: local night, in the sites' time zone
    when: {any: [{hour: {gte: 22}}, {hour: {lt: 7}}]}
    then: [{add_score: 30}]
  - id: lift.report
    when: {text: {contains_any: [电梯困人]}}
    then:
      - add_score: 90
      - open_ticket: {title: "电梯事故报告 / lift incident report", category: lift, queue: lifts}
bands:
  - {band: P1, min: 80}
  - {band: P2, min: 50, below: 80}
  - {band: P3, min: 20, below: 50}
  - {band: P4, below: 20}
"""

REPORT = {
    "location": "Block 3, flat 1202",
    "problem_type": "other",
    "urgency": "low",
    "reporter": "Chen Jing",
    "contact": "13800000000",
}


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "classification.yaml").write_text(CLASSIFICATION, encoding="utf-8")
    (d / "priority.yaml").write_text(PRIORITY, encoding="utf-8")
    for name in ("dispatch.yaml", "sla.yaml", "cn-statutory-holidays-2026.ics"):
        (d / name).write_text((REPO / "rules" / name).read_text(encoding="utf-8"), "utf-8")
    return d


ZONE = "Asia/Shanghai"


@pytest.fixture(params=["durable", "reference"])
def client(db_url: str, rules_dir: Path, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    settings = Settings(
        db_url=db_url, broker_url=None, rules_dir=rules_dir, rules_engine=request.param,
        timezone=ZONE, workers=False,
    )  # fmt: skip
    app = create_app(settings)
    with TestClient(app) as c:
        c.people = add_people(app.state.sessions)  # type: ignore[attr-defined]
        yield c


def h(client: TestClient, who: str) -> dict[str, str]:
    return client.people[who]  # type: ignore[attr-defined]


def report(client: TestClient, description: str) -> dict:
    r = client.post(
        "/tickets", json={**REPORT, "description": description}, headers=h(client, "cust.chen")
    )
    assert r.status_code == 201, r.text
    return r.json()["ticket"]


def test_every_ticket_gets_a_dispatch_and_an_sla_policy(client: TestClient) -> None:
    sup = h(client, "sup.wang")
    gas = report(client, "厨房有煤气味")
    plain = report(client, "门口的灯有点暗")
    g = client.get(f"/tickets/{gas['id']}", headers=sup).json()
    p = client.get(f"/tickets/{plain['id']}", headers=sup).json()
    assert (g["priority"], g["dispatch_policy"], g["sla_policy"]) == ("P1", "emergency",
                                                                        "p1-emergency")  # fmt: skip
    # the catch-all queue goes to the dispatcher; its band decides the SLA
    assert p["dispatch_policy"] == "dispatcher"
    assert p["sla_policy"] in ("p3-standard", "p4-planned")
    status = client.get("/rules", headers=sup).json()
    assert status["timezone"] == ZONE
    decisions = client.get(f"/tickets/{gas['id']}/decisions", headers=sup).json()
    kinds = {d["kind"]: d for d in decisions}
    assert list(kinds) == ["classification", "priority", "dispatch", "sla"]
    assert kinds["dispatch"]["rule_ids"] == ["hazard"]
    assert kinds["dispatch"]["outcome"] == {"rule": "hazard", "policy": "emergency"}
    assert kinds["dispatch"]["rules_version"] == status["dispatch_version"]
    assert kinds["sla"]["outcome"] == {"rule": "p1", "policy": "p1-emergency"}
    assert kinds["sla"]["rules_version"] == status["sla_version"]
    classified = next(e for e in g["history"] if e["action"] == "classified")
    assert classified["data"]["dispatch"] == {"policy": "emergency", "rule": "hazard"}
    assert classified["data"]["sla"] == {"policy": "p1-emergency", "rule": "p1"}


def test_open_ticket_opens_one_follow_up_beside_the_ticket(client: TestClient) -> None:
    sup = h(client, "sup.wang")
    gas = report(client, "gas leak in the boiler room")
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        children = list(s.execute(select(Ticket).where(Ticket.parent_id == gas["id"])).scalars())
        assert len(children) == 1  # the follow-up itself ran no classification: no loop
        child = children[0]
        assert child.title == f"燃气管道安全检查 / gas pipework inspection after #{gas['id']}"
        assert (child.source, child.category, child.department, child.priority) == (
            "rules", "gas", "gas-company", "P2"
        )  # fmt: skip
        assert (child.location, child.state) == (gas["location"], "new")
        assert child.sla_policy == "p2-urgent" and child.dispatch_policy == "urgent"
        assert s.execute(
            select(TicketDecision.kind).where(TicketDecision.ticket_id == child.id)
        ).scalars().all() == ["dispatch", "sla"]
        assert verify(s).ok
    parent = client.get(f"/tickets/{gas['id']}", headers=sup).json()
    opened = [e for e in parent["history"] if e["action"] == "follow_up_opened"]
    assert [e["data"] for e in opened] == [{"ticket": child.id, "rule": "gas.leak"}]
    shown = client.get(f"/tickets/{child.id}", headers=sup).json()
    assert shown["parent_id"] == gas["id"]
    assert shown["history"][0]["data"] == {"channel": "rules", "parent": gas["id"],
                                           "rule": "gas.leak"}  # fmt: skip


def test_a_priority_rule_may_open_a_follow_up_too(client: TestClient) -> None:
    t = report(client, "3 号梯电梯困人")
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        (child,) = s.execute(select(Ticket).where(Ticket.parent_id == t["id"])).scalars()
        assert (child.category, child.department) == ("lift", "lifts")
        assert child.priority == t["priority"]  # none given: the parent's


def test_hour_is_local_time_in_the_sites_zone(client: TestClient) -> None:
    t = report(client, "门口的灯有点暗")
    sup = h(client, "sup.wang")
    decisions = client.get(f"/tickets/{t['id']}/decisions", headers=sup).json()
    prio = next(d for d in decisions if d["kind"] == "priority")
    created = datetime.fromisoformat(t["created_at"])
    local = created.astimezone(ZoneInfo(ZONE))
    assert prio["facts"]["hour"] == local.hour
    assert prio["facts"]["weekday"] == local.isoweekday()
    night = local.hour >= 22 or local.hour < 7
    assert ("night" in prio["rule_ids"]) is night


def test_notify_and_escalate_reach_the_outbox(client: TestClient) -> None:
    gas = report(client, "gas leak in the boiler room")
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        sent = s.execute(
            select(Notification.kind, Notification.recipient, Notification.payload)
            .where(Notification.ticket_id == gas["id"], Notification.kind.like("rule_%"))
            .order_by(Notification.id)
        ).all()
    assert [(k, r) for k, r, _ in sent] == [
        ("rule_notify", "gas-company"), ("rule_escalate", "role:service_director"),
    ]  # fmt: skip
    assert sent[0][2]["message"] == f"燃气泄漏 gas leak at Block 3, flat 1202 (#{gas['id']})"
    assert sent[1][2]["rule"] == "hazard"
    detail = client.get(f"/tickets/{gas['id']}", headers=h(client, "sup.wang")).json()
    (esc,) = [e for e in detail["history"] if e["action"] == "escalated"]
    assert esc["note"] == f"险情 hazard: {gas['title']}"
