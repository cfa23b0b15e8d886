"""SLA on a running central (SQLite and PostgreSQL): the policy and calendar pinned at intake,
clocks from the log, timers that move with pauses, warnings and escalations fired once each
(whatever the host clock does), the hand-off circuit breaker, repeat complaints, and the
overdue root-cause report over the API and the CLI."""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from support import add_people

from central.api.app import create_app
from central.services.audit import verify
from central.settings import Settings
from central.storage.models import Notification, SlaTimer, TicketSla
from fieldloop.cli import main

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]

SLA = """\
apiVersion: fieldloop/v1
kind: SlaRules
calendars:
  - {id: round-the-clock, timezone: UTC, always: true}
policies:
  - id: standard
    calendar: round-the-clock
    targets: {response: 1h, arrival: 2h, resolution: 4h}
    stages: {dispatch: 10m, verification: 24h}
    pause_on: [waiting_parts]
    warn_at: [50%]
    escalations:
      - {id: unassigned, target: stage.dispatch, at: 100%, to: supervisor,
         message: "无人接单 / unassigned: {{ticket.id}}"}
      - {id: late, target: resolution, at: 100%, to: supervisor}
      - {id: very-late, target: resolution, at: 150%, to: service_director}
handoffs: {max_bounces: 2, escalate_to: supervisor, repeat_within: 1d}
rules:
  - id: all
    then: [{use_policy: standard}]
"""


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in ("classification.yaml", "priority.yaml", "dispatch.yaml"):
        shutil.copy(REPO / "rules" / name, rules / name)
    (rules / "sla.yaml").write_text(SLA, encoding="utf-8")
    settings = Settings(db_url=db_url, broker_url=None, rules_dir=rules, rules_engine="reference",
                        workers=False)  # the test sweeps by hand  # fmt: skip
    app = create_app(settings)
    with TestClient(app) as c:
        c.people = add_people(app.state.sessions)  # type: ignore[attr-defined]
        c.db_url = db_url  # type: ignore[attr-defined]
        yield c


def h(c: TestClient, who: str) -> dict[str, str]:
    return c.people[who]  # type: ignore[attr-defined]


def report(c: TestClient, description: str, location: str = "Block 3, flat 1202") -> dict:
    r = c.post(
        "/tickets",
        json={"location": location, "problem_type": "other", "urgency": "low",
              "description": description, "reporter": "Chen Jing", "contact": "138"},
        headers=h(c, "cust.chen"),
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()["ticket"]


def clocks(c: TestClient, tid: int) -> dict[str, Any]:
    r = c.get(f"/tickets/{tid}/sla", headers=h(c, "sup.wang"))
    assert r.status_code == 200, r.text
    return r.json()


def timers(c: TestClient, tid: int) -> dict[str, SlaTimer]:
    with c.app.state.sessions() as s:  # type: ignore[attr-defined]
        rows = s.execute(select(SlaTimer).where(SlaTimer.ticket_id == tid)).scalars()
        return {t.key: t for t in rows}


def test_the_policy_is_pinned_and_timers_follow_the_clocks(client: TestClient) -> None:
    t = report(client, "走廊的灯不亮")
    view = clocks(client, t["id"])
    assert (view["policy"], view["calendar"]) == ("standard", "round-the-clock")
    by = {c["name"]: c for c in view["clocks"]}
    assert by["response"]["status"] == "running" and by["response"]["target_s"] == 3600
    assert by["stage.dispatch"]["status"] == "running"
    created = datetime.fromisoformat(t["created_at"])
    due = {k: v.due_at for k, v in timers(client, t["id"]).items()}
    assert abs((due["esc:unassigned"] - created) - timedelta(minutes=10)) < timedelta(seconds=2)
    assert abs((due["esc:late"] - created) - timedelta(hours=4)) < timedelta(seconds=2)
    assert abs((due["esc:very-late"] - created) - timedelta(hours=6)) < timedelta(seconds=2)
    assert abs((due["warn:response:50"] - created) - timedelta(minutes=30)) < timedelta(seconds=2)
    # editing sla.yaml later does not change what this ticket was promised
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        pinned = s.get(TicketSla, t["id"])
        assert pinned.policy["targets"]["resolution"] == 4 * 3600
        assert (
            pinned.rules_version
            == client.get("/rules", headers=h(client, "sup.wang")).json()["sla_version"]
        )


def test_each_timer_fires_once_whatever_the_host_clock_does(client: TestClient) -> None:
    t = report(client, "走廊的灯不亮")
    scheduler = client.app.state.sla_scheduler  # type: ignore[attr-defined]
    created = datetime.fromisoformat(t["created_at"])
    assert scheduler.sweep() == 0  # nothing is due yet by the database's clock
    # the host clock jumps 11 minutes ahead: the unassigned escalation and two warnings
    fired = scheduler.sweep(created + timedelta(minutes=31))
    assert fired == 3
    got = timers(client, t["id"])
    assert got["esc:unassigned"].fired_at is not None
    assert got["esc:late"].fired_at is None
    # ... and back, and ahead again: nothing fires twice
    assert scheduler.sweep(created + timedelta(minutes=5)) == 0
    assert scheduler.sweep(created + timedelta(minutes=31)) == 0
    detail = client.get(f"/tickets/{t['id']}", headers=h(client, "sup.wang")).json()
    esc = [e for e in detail["history"] if e["action"] == "sla_escalation"]
    assert [e["data"]["key"] for e in esc] == ["esc:unassigned"]
    assert esc[0]["note"] == f"无人接单 / unassigned: #{t['id']}"
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        sent = s.execute(
            select(Notification.recipient, Notification.kind).where(
                Notification.ticket_id == t["id"], Notification.kind.like("sla_%")
            )
        ).all()
        assert ("role:supervisor", "sla_escalation") in sent
        assert len([k for _, k in sent if k == "sla_escalation"]) == 1
        assert verify(s).ok
    # much later: the resolution breach and its second level, once each
    assert scheduler.sweep(created + timedelta(hours=7)) >= 2
    assert scheduler.sweep(created + timedelta(hours=8)) == 0
    by = {c["name"]: c for c in clocks(client, t["id"])["clocks"]}
    assert by["stage.dispatch"]["status"] in ("running", "breached")


def test_waiting_for_parts_pauses_the_clock_and_moves_the_timers(client: TestClient) -> None:
    c = client
    t = report(c, "走廊的灯不亮")
    tid = t["id"]
    eng, disp = h(c, "eng.li"), h(c, "disp.zhao")
    assert (
        c.post(f"/tickets/{tid}/dispatch", json={"engineer": "eng.li"}, headers=disp).status_code
        == 200
    )
    for step, body in (("accept", {}), ("depart", {}), ("arrive", {}), ("start", {})):
        r = c.post(f"/tickets/{tid}/{step}", json=body, headers=eng)
        assert r.status_code == 200, r.text
    before = timers(c, tid)["esc:late"].due_at
    parts = [{"part_no": "LED-9W", "description": "LED tube", "quantity": 1}]
    assert (
        c.post(f"/tickets/{tid}/wait-parts", json={"parts": parts}, headers=eng).status_code == 200
    )
    view = clocks(c, tid)
    by = {x["name"]: x for x in view["clocks"]}
    assert by["resolution"]["status"] == "paused"
    assert [p["reason"] for p in view["pauses"]] == ["waiting_parts"]
    assert "esc:late" not in {k for k, v in timers(c, tid).items() if v.fired_at is None}
    assert c.post(f"/tickets/{tid}/resume", json={}, headers=eng).status_code == 200
    after = timers(c, tid)["esc:late"].due_at
    assert after > before  # the pause is not counted against the promise
    assert by["response"]["status"] == "met"


def test_two_hand_offs_trip_the_circuit_breaker(client: TestClient) -> None:
    c = client
    t = report(c, "楼道有异味")
    first = clocks(c, t["id"])["coordinator"]
    sup = h(c, "sup.wang")
    for dept in ("plumbing", "environment"):
        r = c.post(f"/tickets/{t['id']}/transfer", json={"department": dept, "reason": "not ours"},
                   headers=sup)  # fmt: skip
        assert r.status_code == 200, r.text
    view = clocks(c, t["id"])
    assert view["flagged"].startswith("2 hand-offs") and view["coordinator"] == first
    alerts = c.get("/me/notifications", headers=sup).json()
    assert [a["kind"] for a in alerts if a["ticket"] == t["id"]].count("circuit_breaker") == 1


def test_a_repeat_complaint_is_flagged(client: TestClient) -> None:
    a = report(client, "卫生间下水道堵了", location="Block 9, flat 301")
    b = report(client, "卫生间下水道又堵了", location="Block 9, flat 301")
    assert clocks(client, a["id"])["flagged"] is None
    assert clocks(client, b["id"])["flagged"].startswith(
        f"repeat complaint: the same problem as ticket #{a['id']}"
    )


def test_the_overdue_report_over_the_api_and_the_cli(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    late = report(client, "走廊的灯不亮")
    report(client, "会议室空调不制冷", location="Room 5")
    later = datetime.fromisoformat(late["created_at"]) + timedelta(hours=5)
    client.app.state.sla_scheduler.sweep(later)  # type: ignore[attr-defined]
    start = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    end = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    sup = h(client, "sup.wang")
    r = client.get("/reports/sla", params={"from": start, "to": end}, headers=sup)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["tickets"] == 2
    # nothing is late yet by the real clock; at 5 h the report (computed now) shows at-risk only
    assert data["overdue"] + data["at_risk"] <= 2
    r = client.get("/reports/sla", params={"from": start, "to": end, "format": "csv"}, headers=sup)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][:3] == ["ticket", "title", "priority"]
    assert client.get("/reports/sla", params={"from": start, "to": end},
                      headers=h(client, "eng.li")).status_code == 403  # fmt: skip
    bad = client.get("/reports/sla", params={"from": end, "to": start}, headers=sup)
    assert bad.status_code == 422 and bad.json()["detail"]["fields"][0]["field"] == "to"
    db = client.db_url  # type: ignore[attr-defined]
    assert main(["report", "sla", "--from", start[:10], "--to", end[:10], "--db", db]) == 0
    out = capsys.readouterr().out
    assert "2 ticket(s)" in out


def test_a_stage_overdue_too_often_alerts_once(client: TestClient) -> None:
    tickets = [report(client, f"走廊的灯不亮 {i}", location=f"Corridor {i}") for i in range(10)]
    scheduler = client.app.state.sla_scheduler  # type: ignore[attr-defined]
    created = datetime.fromisoformat(tickets[-1]["created_at"])
    assert scheduler.check_rates(created + timedelta(minutes=5)) == []  # nothing late yet
    later = created + timedelta(hours=1)  # every dispatch stage (10 min) is now overdue
    raised = scheduler.check_rates(later)
    assert raised == [f"overdue:dispatch:{later.date().isoformat()}"]
    assert scheduler.check_rates(later + timedelta(minutes=1)) == []  # once a day per stage
    alerts = client.get("/me/notifications", headers=h(client, "sup.wang")).json()
    breaker = [a for a in alerts if a["kind"] == "circuit_breaker" and a["ticket"] is None]
    assert (
        len(breaker) == 1 and "stage dispatch overdue on 10 of 10" in breaker[0]["payload"]["why"]
    )
