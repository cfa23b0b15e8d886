"""central.ingest.telemetry on SQLite and PostgreSQL: many batches in one transaction store each
id once, whatever is already stored or repeated in the same call, and a race with another
replica still gives exact results."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from central.ingest.telemetry import store_batch, store_batches
from central.storage.db import make_engine, migrate, session_factory
from central.storage.models import TelemetryBatchRow, TelemetrySample
from fieldloop.messages import AckResult, Sample, TelemetryBatch

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 11, 23, 8, 1, tzinfo=UTC)


def make_batch(device: str, seq: int, samples: int = 3) -> TelemetryBatch:
    return TelemetryBatch(
        site="plant-1",
        device=device,
        asset=f"A-{device}",
        event_time=T0 + timedelta(seconds=seq),
        seq=seq,
        samples=[
            Sample(metric=f"m{i}", time=T0 + timedelta(seconds=seq, milliseconds=i), value=i + 0.5)
            for i in range(samples)
        ],
    )


def _sessions(url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(url)
    migrate(engine)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    yield from _sessions(db_url)


@pytest.fixture
def pg_sessions(pg_url: str) -> Iterator[sessionmaker[Session]]:
    yield from _sessions(pg_url)


def samples_by_device(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Readings stored per device (each test's batches are of different devices)."""
    with sessions() as s:
        rows = s.execute(
            select(TelemetrySample.c.device, func.count()).group_by(TelemetrySample.c.device)
        ).all()
    return {device: n for device, n in rows}


def test_new_stored_and_repeated_ids_in_one_call(sessions: sessionmaker[Session]) -> None:
    stored = make_batch("d1", 1)
    assert store_batch(sessions, stored, RECEIVED) == AckResult.committed
    new, other, empty = make_batch("d2", 1, samples=4), make_batch("d3", 1), make_batch("d4", 1, 0)

    results = store_batches(sessions, [new, stored, other, new, empty, other], RECEIVED)

    dup, ok = AckResult.duplicate, AckResult.committed
    assert results == [ok, dup, ok, dup, ok, dup]
    assert samples_by_device(sessions) == {"d1": 3, "d2": 4, "d3": 3}
    with sessions() as s:
        rows = {r.id: r for r in s.scalars(select(TelemetryBatchRow))}
        sample = s.execute(
            select(TelemetrySample)
            .where(TelemetrySample.c.device == "d2")
            .order_by(TelemetrySample.c.time)
        ).first()
    assert set(rows) == {stored.id, new.id, other.id, empty.id}
    assert (rows[new.id].device, rows[new.id].seq, rows[new.id].samples) == ("d2", 1, 4)
    assert rows[empty.id].samples == 0 and rows[new.id].received_at == RECEIVED
    assert sample is not None
    assert (sample.asset, sample.metric, sample.value) == ("A-d2", "m0", 0.5)
    assert sample.time == T0 + timedelta(seconds=1)


def test_a_whole_call_of_known_ids_stores_nothing(sessions: sessionmaker[Session]) -> None:
    batches = [make_batch(f"d{i}", 1) for i in range(3)]
    assert store_batches(sessions, batches, RECEIVED) == [AckResult.committed] * 3
    assert store_batches(sessions, batches[::-1], RECEIVED) == [AckResult.duplicate] * 3
    assert store_batch(sessions, batches[0], RECEIVED) == AckResult.duplicate
    assert store_batches(sessions, [], RECEIVED) == []
    assert sum(samples_by_device(sessions).values()) == 9


def test_an_id_stored_by_another_replica_meanwhile_falls_back_to_one_by_one(
    pg_url: str, pg_sessions: sessionmaker[Session]
) -> None:
    """PostgreSQL only: SQLite takes its one write lock at BEGIN, so no replica can get in
    between (and central replicas share PostgreSQL, never a SQLite file)."""
    sessions, db_url = pg_sessions, pg_url
    first, raced, last = make_batch("d1", 1), make_batch("d2", 1), make_batch("d3", 1)
    replica = make_engine(db_url)
    ours = sessions.kw["bind"]
    fired: list[str] = []

    # The other replica commits `raced` after our lookup found nothing, just before our insert.
    @event.listens_for(ours, "before_cursor_execute")
    def _replica_wins(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("INSERT INTO telemetry_batches") and not fired:
            fired.append(statement)
            assert store_batch(session_factory(replica), raced, RECEIVED) == AckResult.committed

    try:
        results = store_batches(sessions, [first, raced, last], RECEIVED)
    finally:
        event.remove(ours, "before_cursor_execute", _replica_wins)
        replica.dispose()
    assert fired
    assert results == [AckResult.committed, AckResult.duplicate, AckResult.committed]
    assert samples_by_device(sessions) == {"d1": 3, "d2": 3, "d3": 3}
