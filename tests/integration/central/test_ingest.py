"""Central's consumer against the real Mosquitto, on SQLite and PostgreSQL: redelivery never
makes a second ticket, every delivery is acked, malformed input is dead-lettered, the consumer
goes on."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import aiomqtt
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from central.domain.lifecycle import Action
from central.ingest.consumer import EventConsumer
from central.services.tickets import act
from central.storage.db import make_engine, migrate, session_factory
from central.storage.models import DeadLetter, EdgeEvent, Ticket
from fieldloop.brokers import parse_broker_url
from fieldloop.messages import Ack, Event, EventKind
from fieldloop.topics import Topics

pytestmark = pytest.mark.integration

SITE = "plant-1"


def make_event(kind: EventKind = EventKind.fault_opened, seq: int = 1, **kw: object) -> Event:
    fields: dict[str, object] = {
        "site": SITE,
        "device": "chiller-1",
        "asset": "CH-01",
        "event_time": datetime(2026, 11, 23, 8, 0, seq, tzinfo=UTC),
        "seq": seq,
        "kind": kind,
        "rule_id": "chiller.discharge_temp.high",
        "title": "Discharge temperature high",
        "metric": "discharge_temp",
        "value": 97.5,
        "threshold": 95.0,
        "readings": {"discharge_temp": 97.5},
    }
    fields.update(kw)
    return Event.model_validate(fields)


@dataclass
class Harness:
    sessions: sessionmaker[Session]
    consumer: EventConsumer
    client: aiomqtt.Client
    topics: Topics
    acks: asyncio.Queue[Ack]

    async def publish(self, payload: bytes, site: str = SITE) -> None:
        await self.client.publish(self.topics.events(site), payload, qos=1)

    async def next_ack(self) -> Ack:
        return await asyncio.wait_for(self.acks.get(), 10)

    def count(self, model: type) -> int:
        with self.sessions() as s:
            return s.execute(select(func.count()).select_from(model)).scalar_one()


@pytest.fixture
async def harness(mosquitto: str, db_url: str, topics: Topics) -> AsyncIterator[Harness]:
    engine = make_engine(db_url)
    migrate(engine)
    sessions = session_factory(engine)
    consumer = EventConsumer(
        parse_broker_url(mosquitto), sessions, topics, client_id=f"central-{topics.root}"
    )
    task = asyncio.create_task(consumer.run())
    acks: asyncio.Queue[Ack] = asyncio.Queue()
    try:
        await asyncio.wait_for(consumer.connected.wait(), 10)
        async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"edge-{topics.root}") as client:
            await client.subscribe(topics.ack(SITE), qos=1)

            async def collect() -> None:
                async for m in client.messages:
                    acks.put_nowait(Ack.model_validate_json(m.payload))  # type: ignore[arg-type]

            collector = asyncio.create_task(collect())
            try:
                yield Harness(sessions, consumer, client, topics, acks)
            finally:
                collector.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await collector
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        engine.dispose()


async def test_same_event_three_times_makes_one_ticket_and_three_acks(harness: Harness) -> None:
    event = make_event()
    for _ in range(3):
        await harness.publish(event.to_json())
    acks = [await harness.next_ack() for _ in range(3)]
    assert [a.acked_id for a in acks] == [event.id] * 3
    assert [a.result for a in acks] == ["committed", "duplicate", "duplicate"]
    assert len({a.ticket_id for a in acks}) == 1 and acks[0].ticket_id is not None
    assert acks[0].seq == 1 and acks[0].device == "chiller-1"
    assert harness.count(Ticket) == 1
    assert harness.count(EdgeEvent) == 1


async def test_episode_attaches_clears_and_reopens_after_close(harness: Harness) -> None:
    first = make_event(seq=1)
    await harness.publish(first.to_json())
    tid = (await harness.next_ack()).ticket_id

    # another opening event of the same (asset, rule) while the ticket is open: same ticket
    await harness.publish(make_event(seq=2).to_json())
    assert (await harness.next_ack()).ticket_id == tid
    assert harness.count(Ticket) == 1

    await harness.publish(make_event(EventKind.fault_cleared, seq=3, value=85.0).to_json())
    assert (await harness.next_ack()).ticket_id == tid
    with harness.sessions() as s:
        t = s.get(Ticket, tid)
        assert t is not None and not t.fault_active and t.fault_cleared_at is not None

    now = datetime.now(UTC)
    with harness.sessions() as s, s.begin():
        act(s, tid, Action.accept, actor="eng", now=now)  # type: ignore[arg-type]
        act(s, tid, Action.complete, actor="eng", now=now)  # type: ignore[arg-type]
        act(s, tid, Action.close, actor="sup", now=now)  # type: ignore[arg-type]

    # the episode is over: the next fault is a new ticket
    await harness.publish(make_event(seq=4).to_json())
    second = (await harness.next_ack()).ticket_id
    assert second is not None and second != tid
    assert harness.count(Ticket) == 2


async def test_a_clear_that_overtakes_its_open_leaves_the_fault_cleared(harness: Harness) -> None:
    await harness.publish(make_event(EventKind.fault_cleared, seq=2, value=85.0).to_json())
    assert (await harness.next_ack()).ticket_id is None
    await harness.publish(make_event(seq=1).to_json())
    tid = (await harness.next_ack()).ticket_id
    with harness.sessions() as s:
        t = s.get(Ticket, tid)
        assert t is not None and t.fault_active is False


async def test_malformed_events_are_dead_lettered_and_the_consumer_goes_on(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    good = json.loads(make_event().to_json())
    missing = {k: v for k, v in good.items() if k != "asset"} | {"id": "bad-missing"}
    wrong_type = good | {"id": "bad-type", "seq": "seven"}
    wrong_site = good | {"id": "bad-site", "site": "elsewhere"}
    cases = [
        (b"{not json", None),
        (json.dumps(missing).encode(), "asset"),
        (json.dumps(wrong_type).encode(), "seq"),
        (json.dumps(wrong_site).encode(), "does not match topic site"),
    ]
    for payload, _ in cases:
        await harness.publish(payload)
    # the three with a readable id are acked as rejected so the sender stops resending
    rejected = [await harness.next_ack() for _ in range(3)]
    assert {a.acked_id for a in rejected} == {"bad-missing", "bad-type", "bad-site"}
    assert all(a.result == "rejected" and a.reason for a in rejected)

    # and the consumer is still alive: a good event after them becomes a ticket
    await harness.publish(make_event().to_json())
    ok = await harness.next_ack()
    assert ok.result == "committed" and ok.ticket_id is not None

    with harness.sessions() as s:
        letters = s.execute(select(DeadLetter).order_by(DeadLetter.id)).scalars().all()
    assert len(letters) == 4
    assert letters[0].payload == b"{not json" and "JSON" in letters[0].reason
    for letter, (payload, needle) in zip(letters, cases, strict=True):
        assert letter.payload == payload
        assert letter.topic == harness.topics.events(SITE)
        if needle:
            assert needle in letter.reason
    assert harness.count(Ticket) == 1
    assert "dead-lettered" in caplog.text and "consumer continues" in caplog.text


async def test_a_clear_after_the_ticket_was_closed_still_lands_on_it(harness: Harness) -> None:
    await harness.publish(make_event(seq=1).to_json())
    tid = (await harness.next_ack()).ticket_id
    assert tid is not None
    now = datetime.now(UTC)
    with harness.sessions() as s, s.begin():
        act(s, tid, Action.accept, actor="eng", now=now)
        act(s, tid, Action.complete, actor="eng", now=now)
        act(s, tid, Action.close, actor="sup", now=now)  # closed while the fault is still on

    await harness.publish(make_event(EventKind.fault_cleared, seq=2, value=85.0).to_json())
    assert (await harness.next_ack()).ticket_id == tid
    with harness.sessions() as s:
        t = s.get(Ticket, tid)
        assert t is not None
        assert (t.state, t.fault_active) == ("closed", False)
        assert t.fault_cleared_at == datetime(2026, 11, 23, 8, 0, 2, tzinfo=UTC)
    assert harness.count(Ticket) == 1
