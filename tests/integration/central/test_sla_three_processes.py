"""Three central processes on one PostgreSQL fire SLA warnings and escalations while tickets keep
coming; one is killed with SIGKILL mid-run. Every timer fires exactly once — one history entry
and one notification per ticket and key — and the survivors take the killed one's share."""

from __future__ import annotations

import asyncio
import shutil
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import free_port
from sqlalchemy import func, select
from support import Processes, central_up, eventually

from central.domain.intake import TicketRequest
from central.services.intake import create_ticket
from central.services.live_rules import load_rules
from central.storage.db import make_engine, migrate, session_factory
from central.storage.models import Notification, SlaTimer, TicketEvent

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
TICKETS = 60

SLA = """\
apiVersion: fieldloop/v1
kind: SlaRules
calendars:
  - {id: round-the-clock, timezone: UTC, always: true}
policies:
  - id: fast
    calendar: round-the-clock
    targets: {response: 4s, resolution: 8s}
    stages: {dispatch: 2s}
    warn_at: [50%]
    escalations:
      - {id: unassigned, target: stage.dispatch, at: 100%, to: supervisor}
      - {id: late, target: resolution, at: 100%, to: supervisor}
      - {id: very-late, target: resolution, at: 125%, to: service_director}
rules:
  - id: all
    then: [{use_policy: fast}]
"""


@pytest.mark.timeout(150)  # three central processes start, one is killed, timers come due
async def test_three_centrals_fire_each_timer_once_with_one_killed(
    processes: Processes, pg_url: str, tmp_path: Path
) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for name in ("classification.yaml", "priority.yaml"):
        shutil.copy(REPO / "rules" / name, rules_dir / name)
    (rules_dir / "sla.yaml").write_text(SLA, encoding="utf-8")
    engine = make_engine(pg_url)
    migrate(engine)
    sessions = session_factory(engine)
    rules = load_rules(rules_dir)
    env = {
        "FIELDLOOP_RULES_DIR": str(rules_dir),
        "FIELDLOOP_RULES_ENGINE": "reference",
        "FIELDLOOP_SLA_SWEEP_EVERY": "0.2",
        "FIELDLOOP_BROKER_URL": "",
    }
    ports = [free_port() for _ in range(3)]
    procs = [
        processes.fieldloop(["central", "--db", pg_url, "--port", str(p), "--broker", ""],
                        tmp_path / f"central{i}.log", env)
        for i, p in enumerate(ports)
    ]  # fmt: skip
    try:
        for p in ports:
            await central_up(p)

        def open_one(i: int) -> None:
            req = TicketRequest(
                location=f"Room {i}", problem_type="other", urgency="low",
                description=f"走廊的灯不亮 {i}", reporter="Chen", contact="138",
            )  # fmt: skip
            with sessions() as s, s.begin():
                create_ticket(s, req, source="api", actor="cust.chen", now=datetime.now(UTC),
                              rules=rules)  # fmt: skip

        # tickets keep arriving for ~6 s; one central is killed a third of the way in
        for i in range(TICKETS):
            await asyncio.to_thread(open_one, i)
            if i == TICKETS // 3:
                procs[0].send_signal(signal.SIGKILL)
                procs[0].wait(10)
            await asyncio.sleep(0.1)

        async def all_fired() -> bool:
            def check() -> bool:
                with sessions() as s:
                    left = s.execute(
                        select(func.count())
                        .select_from(SlaTimer)
                        .where(SlaTimer.fired_at.is_(None), SlaTimer.key.like("esc:%"))
                    ).scalar_one()
                    return left == 0

            return await asyncio.to_thread(check)

        await eventually(all_fired, within=90, what="every escalation to fire")
        with sessions() as s:
            timers = s.execute(
                select(SlaTimer.ticket_id, SlaTimer.key, SlaTimer.fired_by).where(
                    SlaTimer.fired_at.is_not(None)
                )
            ).all()
            keys = {(t, k) for t, k, _ in timers}
            assert len(keys) == len(timers)  # one row per ticket and key (unique constraint)
            esc = {(t, k) for t, k in keys if k.startswith("esc:")}
            assert len(esc) == TICKETS * 3  # unassigned, late, very-late on every ticket
            # exactly one history entry and one notification per fired timer
            entries = s.execute(
                select(TicketEvent.ticket_id, TicketEvent.data).where(
                    TicketEvent.action.in_(("sla_escalation", "sla_warning"))
                )
            ).all()
            logged = [(t, d["key"]) for t, d in entries]
            assert len(logged) == len(set(logged)) == len(timers)
            sent = s.execute(
                select(func.count())
                .select_from(Notification)
                .where(Notification.kind.in_(("sla_escalation", "sla_warning")))
            ).scalar_one()
            assert sent == len(timers)
            # the survivors shared the work; the killed process did not fire after it died
            firers = {by for _, _, by in timers}
            assert len(firers) >= 2, firers
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except Exception:
                p.kill()
        engine.dispose()
