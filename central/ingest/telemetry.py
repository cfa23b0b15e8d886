"""Storing telemetry batches exactly once by their id: many batches in one transaction (one
commit, one fsync on SQLite, for a whole burst), or one batch on its own."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from central.storage.models import TelemetryBatchRow, TelemetrySample
from fieldloop.messages import AckResult, TelemetryBatch


def store_batch(
    factory: sessionmaker[Session], batch: TelemetryBatch, received_at: datetime
) -> AckResult:
    """One batch in a transaction of its own: ``committed``, or ``duplicate`` for a known id."""
    try:
        return _store(factory, [batch], received_at)[0]
    except IntegrityError:  # another replica stored the same batch a moment ago
        return AckResult.duplicate


def store_batches(
    factory: sessionmaker[Session], batches: Sequence[TelemetryBatch], received_at: datetime
) -> list[AckResult]:
    """One result per batch, in order: ``committed`` for the first copy of an id, ``duplicate``
    for an id already stored or earlier in ``batches``. All in one transaction."""
    if not batches:
        return []
    try:
        return _store(factory, batches, received_at)
    except IntegrityError:
        # Another replica stored one of these ids between our lookup and our insert. The whole
        # transaction is gone; batch by batch, each result is exact again.
        return [store_batch(factory, batch, received_at) for batch in batches]


def _store(
    factory: sessionmaker[Session], batches: Sequence[TelemetryBatch], received_at: datetime
) -> list[AckResult]:
    with factory() as session, session.begin():
        ids = {batch.id for batch in batches}
        seen = set(
            session.scalars(select(TelemetryBatchRow.id).where(TelemetryBatchRow.id.in_(ids)))
        )
        results: list[AckResult] = []
        new: list[TelemetryBatch] = []
        for batch in batches:
            if batch.id in seen:
                results.append(AckResult.duplicate)
            else:
                seen.add(batch.id)
                new.append(batch)
                results.append(AckResult.committed)
        if not new:
            return results
        # One Core executemany per table, on the connection: no ORM object nor ORM bulk
        # bookkeeping per row, which for a burst's 10,000 samples would cost more than the commit.
        conn = session.connection()
        conn.execute(
            insert(TelemetryBatchRow),
            [
                {
                    "id": b.id,
                    "site": b.site,
                    "device": b.device,
                    "asset": b.asset,
                    "seq": b.seq,
                    "event_time": b.event_time,
                    "received_at": received_at,
                    "samples": len(b.samples),
                }
                for b in new
            ],
        )
        samples = [
            {
                "batch_id": b.id,
                "time": s.time,
                "site": b.site,
                "device": b.device,
                "asset": b.asset,
                "metric": s.metric,
                "value": s.value,
                "quality": s.quality,
            }
            for b in new
            for s in b.samples
        ]
        if samples:
            conn.execute(insert(TelemetrySample), samples)
        return results
