"""The whole slice, from a Modbus register to a closed ticket, on real components:
the machine's Mosquitto with PostgreSQL, and the embedded broker with SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from conftest import free_port
from sqlalchemy import func, select
from support import Stack, eventually

from central.domain.audit import verify_chain
from central.services.history import stored_entry
from central.storage.models import EdgeEvent, TicketEvent
from fieldloop.embedded_broker import EmbeddedBroker
from fieldloop.topics import Topics
from simulators.scenarios import chiller_overheat

pytestmark = pytest.mark.integration


@pytest.fixture(params=["mosquitto+postgresql", "embedded+sqlite"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    if request.param == "mosquitto+postgresql":
        yield request.getfixturevalue("mosquitto"), request.getfixturevalue("pg_url")
        return
    async with EmbeddedBroker("127.0.0.1", free_port()) as broker:
        yield broker.url, f"sqlite:///{tmp_path / 'central.db'}"


async def test_register_crossing_becomes_a_closed_ticket(
    backend: tuple[str, str], topics: Topics, tmp_path: Path
) -> None:
    broker_url, db_url = backend
    # discharge temp: 80 -> 100 over 1 s from t=0.5, holds 8 s, back to 80 over 1 s. The clock
    # starts with the simulator: the hold has to outlast a slow start of the edge and central on
    # a loaded machine (with 3 s, an edge first polling at t=4 saw the crossing but not 1 s of it)
    # and leave time to dispatch and accept while the fault is still on.
    scenario = chiller_overheat(start=0.5, ramp=1.0, hold=8.0, recover=1.0)
    async with Stack(
        tmp_path,
        broker_url=broker_url,
        db_url=db_url,
        topics=topics,
        scenario=scenario,
        sim_port=free_port(),
        http_port=free_port(),
    ) as stack:

        async def opened() -> list[dict] | None:
            return await stack.tickets(asset="CH-01") or None

        [ticket] = await eventually(opened, within=20, what="the sensor's ticket")
        assert ticket["source"] == "iot"
        assert ticket["state"] == {"key": "new", "en": "New", "zh": "新建"}
        assert ticket["rule_id"] == "chiller.discharge_temp.high"
        # the shipped priority rules: a major chiller fault is P2, and +10 out of hours
        # (22:00-07:00, the hour the ticket came in) lifts it to P1
        hour = datetime.fromisoformat(ticket["created_at"]).hour
        assert ticket["priority"] == ("P1" if hour >= 22 or hour < 7 else "P2")
        assert ticket["location"] == "Test plant room"
        assert ticket["readings"]["discharge_temp"] > 95
        assert "supply_water_temp" in ticket["readings"]
        tid = ticket["id"]
        # offered and taken while the fault is still on (a fault that clears before anyone is
        # dispatched closes its ticket by itself: tests/integration/central/test_iot_semantics.py)
        await stack.act(tid, "dispatch", "disp.zhao", engineer="eng.li")
        await stack.act(tid, "accept", "eng.li")

        async def cleared() -> dict | None:
            t = await stack.ticket(tid)
            return t if not t["fault_active"] else None

        t = await eventually(cleared, within=20, what="the fault to clear")
        assert t["fault_cleared_at"] is not None

        await stack.act(tid, "depart", "eng.li")
        await stack.act(tid, "arrive", "eng.li", location={"lat": 31.23, "lon": 121.47})
        await stack.act(tid, "start", "eng.li")
        await stack.act(tid, "complete", "eng.li", report="cleaned condenser")
        closed = await stack.act(tid, "close", "sup.wang", reason="verified on the BMS")
        assert closed["state"]["key"] == "closed"
        assert closed["closed_at"] is not None

        detail = await stack.ticket(tid)
        # the SLA policy pinned, and (no engineer has a dispatch profile here) the dispatcher's
        # queue, before the dispatcher sent it by hand
        assert [h["action"] for h in detail["history"]][:4] == [
            "created", "sla_attached", "classified", "dispatcher_queue",
        ]  # fmt: skip
        steps = detail["history"][4:]
        assert [h["action"] for h in steps] == [
            "dispatch", "accept", "fault_cleared", "depart", "arrive", "start", "complete",
            "close",
        ]  # fmt: skip
        assert [h["actor"] for h in steps][3:] == [
            "eng.li", "eng.li", "eng.li", "eng.li", "sup.wang",
        ]  # fmt: skip
        assert steps[4]["data"]["gps"] == {
            "lat": 31.23, "lon": 121.47, "accuracy_m": None,
        }  # fmt: skip

        # still exactly one ticket: the clear did not open another, and the whole episode
        # produced two edge events, each stored once, both acked (the outbox drained)
        assert len(await stack.tickets(asset="CH-01")) == 1

        async def drained() -> bool:
            return stack.agent.outbox.count() == 0

        await eventually(drained, within=10, what="the edge outbox to drain")
        sessions = stack.central.app.state.sessions
        with sessions() as s:
            kinds = s.execute(select(EdgeEvent.kind).order_by(EdgeEvent.seq)).scalars().all()
            assert kinds == ["fault_opened", "fault_cleared"]
            rows = s.execute(
                select(TicketEvent).where(TicketEvent.ticket_id == tid).order_by(TicketEvent.seq)
            ).scalars()
            assert verify_chain((stored_entry(r), r.prev_hash, r.hash) for r in rows) == []
            assert s.execute(select(func.count()).select_from(EdgeEvent)).scalar_one() == 2
