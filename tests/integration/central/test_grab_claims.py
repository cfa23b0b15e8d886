"""Grab mode (抢单): a claim succeeds exactly once under real concurrency — 20 engineers claiming
one job at the same moment, each in its own transaction on PostgreSQL (and SQLite) — and an
engineer's claim limit holds even when they claim several jobs at once."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from support import add_people

from central.api.app import create_app
from central.domain.permissions import Caller, Role
from central.services import dispatching
from central.settings import Settings
from central.storage.models import DispatchDecisionRow, Ticket, TicketEvent

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]

DISPATCH = """\
apiVersion: fieldloop/v1
kind: DispatchRules
policies:
  - id: pool
    description: every job goes to the grab pool / 所有工单进入抢单池
    mode: grab
    constraints: {same_department: false, same_region: false, max_open_jobs: 10}
    grab: {between: ["00:00", "23:59"], claim_limit: 2}
rules:
  - id: everything
    then: [{use_policy: pool}]
"""

ENGINEERS = [f"eng.g{i:02d}" for i in range(20)]


@pytest.fixture
def app_client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in ("classification.yaml", "priority.yaml"):
        shutil.copy(REPO / "rules" / name, rules / name)
    (rules / "dispatch.yaml").write_text(DISPATCH, encoding="utf-8")
    settings = Settings(
        db_url=db_url, broker_url=None, rules_dir=rules, rules_engine="reference", workers=False
    )
    app = create_app(settings)
    with TestClient(app) as c:
        people = {n: Role.engineer for n in ENGINEERS}
        people.update({"cust.chen": Role.customer, "admin": Role.admin, "eng.none": Role.engineer})
        c.people = add_people(app.state.sessions, people)  # type: ignore[attr-defined]
        for n in ENGINEERS:
            r = c.put(f"/engineers/{n}", json={"name": n, "skills": {"hvac": 3}},
                      headers=c.people["admin"])  # type: ignore[attr-defined]  # fmt: skip
            assert r.status_code == 200, r.text
        r = c.put("/engineers/eng.none", json={"name": "no skills"},
                  headers=c.people["admin"])  # type: ignore[attr-defined]  # fmt: skip
        assert r.status_code == 200
        yield c


def report(c: TestClient, n: int = 1) -> list[int]:
    ids = []
    for i in range(n):
        r = c.post(
            "/tickets",
            json={"location": f"Room {i}", "problem_type": "other", "urgency": "low",
                  "description": f"空调不制冷 {i}", "reporter": "Chen", "contact": "138"},
            headers=c.people["cust.chen"],  # type: ignore[attr-defined]
        )  # fmt: skip
        assert r.status_code == 201, r.text
        t = r.json()["ticket"]
        assert (t["state"]["key"], t["dispatch_policy"], t["assignee"]) == ("new", "pool", None)
        ids.append(t["id"])
    return ids


def race(c: TestClient, claims: list[tuple[str, int]]) -> list[tuple[str, int, Any]]:
    """Every (engineer, ticket) claim at once, each in its own session and transaction."""
    sessions = c.app.state.sessions  # type: ignore[attr-defined]
    rules = c.app.state.live_rules.current  # type: ignore[attr-defined]
    barrier = threading.Barrier(len(claims))
    results: list[tuple[str, int, Any]] = []
    lock = threading.Lock()

    def one(engineer: str, tid: int) -> None:
        barrier.wait()
        try:
            with sessions() as s, s.begin():
                dispatching.claim(s, tid, Caller(engineer, Role.engineer), rules,
                                  datetime.now(UTC))  # fmt: skip
            outcome: Any = "won"
        except Exception as exc:
            outcome = exc
        with lock:
            results.append((engineer, tid, outcome))

    threads = [threading.Thread(target=one, args=claim) for claim in claims]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == len(claims)
    return results


def test_twenty_engineers_claim_one_job_and_exactly_one_wins(app_client: TestClient) -> None:
    (tid,) = report(app_client)
    results = race(app_client, [(e, tid) for e in ENGINEERS])
    winners = [e for e, _, o in results if o == "won"]
    losers = [o for _, _, o in results if o != "won"]
    assert len(winners) == 1, results
    assert all(isinstance(o, dispatching.ClaimRefused) for o in losers), losers
    assert all("already taken" in str(o) for o in losers)
    with app_client.app.state.sessions() as s:  # type: ignore[attr-defined]
        ticket = s.get(Ticket, tid)
        assert (ticket.state, ticket.assignee) == ("accepted", winners[0])
        accepts = s.execute(select(func.count()).select_from(TicketEvent).where(
            TicketEvent.ticket_id == tid, TicketEvent.action == "accept")).scalar_one()  # fmt: skip
        claims = s.execute(
            select(DispatchDecisionRow.actor).where(
                DispatchDecisionRow.ticket_id == tid, DispatchDecisionRow.kind == "claim"
            )
        ).all()
        assert accepts == 1 and [c for (c,) in claims] == winners


def test_the_claim_limit_holds_when_one_engineer_claims_many_at_once(
    app_client: TestClient,
) -> None:
    ids = report(app_client, 5)
    results = race(app_client, [("eng.g00", tid) for tid in ids])
    won = sorted(t for _, t, o in results if o == "won")
    refused = [o for _, _, o in results if o != "won"]
    assert len(won) == 2  # the pool policy's claim_limit
    assert len(refused) == 3 and all("allows 2 at a time" in str(o) for o in refused)
    with app_client.app.state.sessions() as s:  # type: ignore[attr-defined]
        mine = s.execute(select(Ticket.id).where(Ticket.assignee == "eng.g00")).scalars().all()
        assert sorted(mine) == won


def test_the_pool_over_http(app_client: TestClient) -> None:
    c = app_client
    (tid,) = report(c)
    pool = c.get("/jobs/open", headers=c.people["eng.g05"]).json()  # type: ignore[attr-defined]
    assert [j["ticket"]["id"] for j in pool] == [tid]
    # without the skill the job is not in their pool, and their claim is refused by name
    none = c.people["eng.none"]  # type: ignore[attr-defined]
    assert c.get("/jobs/open", headers=none).json() == []
    r = c.post(f"/tickets/{tid}/claim", headers=none)
    assert r.status_code == 403 and "skills" in r.json()["detail"]
    r = c.post(f"/tickets/{tid}/claim", headers=c.people["eng.g05"])  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    assert (r.json()["state"]["key"], r.json()["assignee"]) == ("accepted", "eng.g05")
    r = c.post(f"/tickets/{tid}/claim", headers=c.people["eng.g06"])  # type: ignore[attr-defined]
    assert r.status_code == 409 and "already taken" in r.json()["detail"]
    assert c.get("/jobs/open", headers=c.people["eng.g06"]).json() == []  # type: ignore[attr-defined]
