"""Central's consumer against the real Mosquitto, on SQLite and PostgreSQL: redelivery never
makes a second ticket, every delivery is acked, malformed input is dead-lettered, the consumer
goes on; a burst of telemetry is stored in few transactions and acked once per batch."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiomqtt
import pytest
from sqlalchemy import distinct, func, select, text
from sqlalchemy.orm import Session, sessionmaker
from support import eventually

from central.domain.lifecycle import Action
from central.ingest.consumer import EventConsumer
from central.services.tickets import Step, act
from central.storage.db import make_engine, migrate, session_factory
from central.storage.models import (
    DeadLetter,
    EdgeEvent,
    TelemetryBatchRow,
    TelemetryQuarantine,
    TelemetrySample,
    Ticket,
)
from fieldloop.brokers import parse_broker_url
from fieldloop.messages import Ack, AckResult, Event, EventKind, Sample, TelemetryBatch
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


# Readings from an hour ago: central quarantines readings much older than its clock.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def make_batch(device: str, seq: int, samples: int = 50) -> TelemetryBatch:
    start = T0 + timedelta(seconds=seq)
    return TelemetryBatch(
        site=SITE,
        device=device,
        asset=f"A-{device}",
        event_time=start,
        seq=seq,
        samples=[Sample(metric=f"r{i:02d}", time=start, value=i + seq) for i in range(samples)],
    )


@dataclass
class Harness:
    sessions: sessionmaker[Session]
    consumer: EventConsumer
    client: aiomqtt.Client
    topics: Topics
    acks: asyncio.Queue[Ack]

    async def publish(self, payload: bytes, site: str = SITE) -> None:
        await self.client.publish(self.topics.events(site), payload, qos=1)

    async def publish_all(self, messages: Sequence[TelemetryBatch | Event | bytes]) -> None:
        """All in flight at once, in this order, so they reach central as one burst. Raw bytes
        go to the telemetry topic."""
        await asyncio.gather(
            *(
                self.client.publish(
                    self.topics.events(SITE)
                    if isinstance(m, Event)
                    else self.topics.telemetry(SITE),
                    m if isinstance(m, bytes) else m.to_json(),
                    qos=1,
                )
                for m in messages
            )
        )

    async def next_ack(self) -> Ack:
        return await asyncio.wait_for(self.acks.get(), 10)

    async def take_acks(self, n: int) -> list[Ack]:
        """The next ``n`` acks, and proof that no other ack follows them: central acks in the
        order it processes, so any further ack of those messages would come before the ack of a
        sentinel batch published once the ``n`` are in."""
        acks = [await asyncio.wait_for(self.acks.get(), 30) for _ in range(n)]
        sentinel = make_batch("sentinel", len(acks), samples=1)
        await self.publish_all([sentinel])
        assert (await self.next_ack()).acked_id == sentinel.id, "an ack beyond the expected ones"
        return acks

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
            client.pending_calls_threshold = 1000  # bursts are published all at once on purpose
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

    # it clears before anyone was dispatched: the ticket resolves itself
    await harness.publish(make_event(EventKind.fault_cleared, seq=3, value=85.0).to_json())
    assert (await harness.next_ack()).ticket_id == tid
    with harness.sessions() as s:
        t = s.get(Ticket, tid)
        assert t is not None and not t.fault_active and t.fault_cleared_at is not None
        assert (t.state, t.resolution) == ("closed", "recovered before dispatch")

    # the same fault again within the reopen window: the same ticket, reopened
    await harness.publish(make_event(seq=4).to_json())
    assert (await harness.next_ack()).ticket_id == tid
    with harness.sessions() as s:
        t = s.get(Ticket, tid)
        assert t is not None and (t.state, t.reopen_count, t.fault_active) == ("reopened", 1, True)
        assert t.occurrences == 3
    assert harness.count(Ticket) == 1


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
        for action in (Action.accept, Action.depart, Action.arrive, Action.start):
            act(s, tid, Step(action), caller=None, actor="eng", now=now)
        act(s, tid, Step(Action.complete, report="fixed"), caller=None, actor="eng", now=now)
        # closed while the fault is still on
        act(s, tid, Step(Action.close, reason="on site"), caller=None, actor="sup", now=now)

    await harness.publish(make_event(EventKind.fault_cleared, seq=2, value=85.0).to_json())
    assert (await harness.next_ack()).ticket_id == tid
    with harness.sessions() as s:
        t = s.get(Ticket, tid)
        assert t is not None
        assert (t.state, t.fault_active) == ("closed", False)
        assert t.fault_cleared_at == datetime(2026, 11, 23, 8, 0, 2, tzinfo=UTC)
    assert harness.count(Ticket) == 1


async def test_a_telemetry_burst_is_stored_and_acked_once_per_batch(harness: Harness) -> None:
    batches = [make_batch(f"dev-{i % 100:03d}", i // 100 + 1) for i in range(300)]
    await harness.publish_all(batches)
    acks = await harness.take_acks(300)

    assert sorted(a.acked_id for a in acks) == sorted(b.id for b in batches)  # each exactly once
    by_id = {b.id: b for b in batches}
    for ack in acks:
        batch = by_id[ack.acked_id]
        assert ack.result == AckResult.committed and ack.site == SITE
        assert (ack.device, ack.asset, ack.seq) == (batch.device, batch.asset, batch.seq)
        assert ack.event_time == batch.event_time
        assert ack.rule_id is None and ack.ticket_id is None
    assert harness.count(TelemetryBatchRow) == 301  # with take_acks' sentinel
    assert harness.count(TelemetrySample) == 300 * 50 + 1
    with harness.sessions() as s:
        per_batch = set(s.scalars(select(TelemetryBatchRow.samples)))
        # one received_at per transaction: the batches were stored in bursts, not one by one
        transactions = s.execute(
            select(func.count(distinct(TelemetryBatchRow.received_at)))
        ).scalar_one()
    assert per_batch == {50, 1}
    assert transactions < 150, f"{transactions} transactions for 301 batches"

    # The edge resending part of the burst gets duplicates, and nothing is stored twice.
    await harness.publish_all(batches[:40])
    again = await harness.take_acks(40)
    assert {a.acked_id for a in again} == {b.id for b in batches[:40]}
    assert {a.result for a in again} == {AckResult.duplicate}
    assert harness.count(TelemetrySample) == 300 * 50 + 2


async def test_malformed_telemetry_in_a_burst_is_dead_lettered_and_the_rest_stored(
    harness: Harness,
) -> None:
    good = [make_batch(f"dev-{i:03d}", 1) for i in range(60)]
    doc = json.loads(good[0].to_json())
    bad_seq = json.dumps(doc | {"id": "bad-seq", "seq": -1})
    # A bad reading spoils only itself: its batch is stored, the reading quarantined.
    bad_time = json.dumps(doc | {"id": "bad-time", "samples": [doc["samples"][0] | {"time": "x"}]})
    wrong_site = json.dumps(doc | {"id": "bad-site", "site": "elsewhere"})
    burst: list[TelemetryBatch | bytes] = [
        *good[:20],
        b"{not json",
        *good[20:40],
        bad_seq.encode(),
        bad_time.encode(),
        *good[40:],
        wrong_site.encode(),
    ]
    await harness.publish_all(burst)
    acks = await harness.take_acks(63)

    rejected = {a.acked_id: a for a in acks if a.result == AckResult.rejected}
    assert set(rejected) == {"bad-seq", "bad-site"}
    assert "seq" in (rejected["bad-seq"].reason or "")
    committed = [a.acked_id for a in acks if a.result == AckResult.committed]
    assert sorted(committed) == sorted([*(b.id for b in good), "bad-time"])
    with harness.sessions() as s:
        letters = s.execute(select(DeadLetter).order_by(DeadLetter.id)).scalars().all()
        held = s.execute(select(TelemetryQuarantine)).scalars().all()
        inbox = s.get(TelemetryBatchRow, "bad-time")
    assert [letter.payload for letter in letters] == [
        b"{not json",
        bad_seq.encode(),
        wrong_site.encode(),
    ]
    assert {letter.topic for letter in letters} == {harness.topics.telemetry(SITE)}
    assert "does not match topic site" in letters[2].reason
    assert [(q.batch_id, q.reason, q.time) for q in held] == [("bad-time", "bad_time", '"x"')]
    assert inbox is not None and (inbox.samples, inbox.quarantined) == (0, 1)
    assert harness.count(TelemetryBatchRow) == 62  # the good ones, bad-time and the sentinel
    assert harness.count(TelemetrySample) == 60 * 50 + 1


async def test_events_inside_a_telemetry_burst_make_their_tickets_in_order(
    harness: Harness,
) -> None:
    batches = [make_batch(f"dev-{i:03d}", 1) for i in range(90)]
    opened = make_event(seq=1)
    other = make_event(seq=1, device="chiller-2", asset="CH-02")
    cleared = make_event(EventKind.fault_cleared, seq=2, value=85.0)
    burst = [*batches[:10], opened, *batches[10:40], other, *batches[40:70], cleared]
    await harness.publish_all([*burst, *batches[70:]])
    acks = await harness.take_acks(93)

    event_acks = [a for a in acks if a.rule_id is not None]
    assert [a.acked_id for a in event_acks] == [opened.id, other.id, cleared.id]  # arrival order
    first, second, clear = (a.ticket_id for a in event_acks)
    assert first is not None and second is not None and first < second  # opened in that order
    assert clear == first
    assert all(a.result == AckResult.committed for a in acks)
    with harness.sessions() as s:
        ticket = s.get(Ticket, first)
        assert ticket is not None and ticket.fault_active is False
    assert harness.count(Ticket) == 2 and harness.count(EdgeEvent) == 3
    assert harness.count(TelemetryBatchRow) == 91


async def test_no_telemetry_is_acked_while_the_database_fails(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with harness.sessions() as s, s.begin():
        s.execute(text("ALTER TABLE telemetry_samples RENAME TO telemetry_samples_away"))
    batches = [make_batch(f"dev-{i:03d}", 1) for i in range(50)]
    await harness.publish_all(batches)

    def failed() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith("could not store")]

    async def all_failed() -> bool:
        return sum(int(r.args[0]) for r in failed()) == 50  # type: ignore[index]

    await eventually(all_failed, within=20, what="all 50 batches to fail to store")
    assert len(failed()) < 10, "the failure is logged once per burst, not once per batch"
    assert harness.acks.empty()

    # The database is back and the edge resends: each batch is stored and acked once.
    with harness.sessions() as s, s.begin():
        s.execute(text("ALTER TABLE telemetry_samples_away RENAME TO telemetry_samples"))
    await harness.publish_all(batches)
    acks = await harness.take_acks(50)
    assert sorted(a.acked_id for a in acks) == sorted(b.id for b in batches)
    assert {a.result for a in acks} == {AckResult.committed}
    assert harness.count(TelemetrySample) == 50 * 50 + 1
