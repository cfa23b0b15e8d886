"""The ticket a source's events produce does not depend on the order they arrive in: after a
restart, resends and queued messages interleave, and only the edge's sequence numbers count."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from central.ingest.events import ingest
from central.storage.db import make_engine, migrate, session_factory
from central.storage.models import EdgeEvent, Ticket
from fieldloop.messages import Event, EventKind

pytestmark = pytest.mark.integration

OPEN, CLEAR = EventKind.fault_opened, EventKind.fault_cleared


def events(site: str, kinds: list[EventKind]) -> list[Event]:
    return [
        Event(
            site=site,
            device="chiller-1",
            asset="CH-01",
            event_time=datetime(2026, 11, 23, 8, 0, seq, tzinfo=UTC),
            seq=seq,
            kind=kind,
            rule_id="chiller.discharge_temp.high",
            title="Discharge temperature high",
            value=97.0 if kind is OPEN else 85.0,
        )
        for seq, kind in enumerate(kinds, start=1)
    ]


@pytest.mark.parametrize(
    ("kinds", "active", "cleared_second"),
    [([OPEN, CLEAR, OPEN, CLEAR, OPEN], True, None), ([OPEN, CLEAR, OPEN, CLEAR], False, 4)],
)
def test_any_arrival_order_gives_the_same_ticket(
    db_url: str, kinds: list[EventKind], active: bool, cleared_second: int | None
) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    sessions = session_factory(engine)
    orders = list(itertools.permutations(range(len(kinds))))
    random.Random(7).shuffle(orders)
    try:
        for n, order in enumerate(orders[:30]):
            site = f"order-{n}"
            evs = events(site, kinds)
            for i in order:
                ingest(sessions, evs[i], datetime.now(UTC))
            ingest(sessions, evs[order[0]], datetime.now(UTC))  # and a redelivery
            with sessions() as s:
                [ticket] = s.execute(select(Ticket).where(Ticket.site == site)).scalars().all()
                attached = s.execute(
                    select(EdgeEvent.seq).where(EdgeEvent.ticket_id == ticket.id)
                ).scalars()
                got = (
                    ticket.occurrences,
                    ticket.fault_active,
                    ticket.fault_cleared_at and ticket.fault_cleared_at.second,
                    ticket.fault_opened_at.second if ticket.fault_opened_at else None,
                    sorted(attached),
                )
            assert got == (
                kinds.count(OPEN),
                active,
                cleared_second,
                1,
                list(range(1, len(kinds) + 1)),
            ), f"arrival order {[o + 1 for o in order]}"
    finally:
        engine.dispose()
