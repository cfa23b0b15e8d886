"""Storing one telemetry batch, exactly once by its id, in one transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from central.storage.models import TelemetryBatchRow, TelemetrySample
from fieldloop.messages import AckResult, TelemetryBatch


def store_batch(
    factory: sessionmaker[Session], batch: TelemetryBatch, received_at: datetime
) -> AckResult:
    try:
        with factory() as session, session.begin():
            if session.get(TelemetryBatchRow, batch.id) is not None:
                return AckResult.duplicate
            session.add(
                TelemetryBatchRow(
                    id=batch.id,
                    site=batch.site,
                    device=batch.device,
                    asset=batch.asset,
                    seq=batch.seq,
                    event_time=batch.event_time,
                    received_at=received_at,
                    samples=len(batch.samples),
                )
            )
            session.flush()
            if batch.samples:  # one executemany, not an ORM object per reading
                session.execute(
                    insert(TelemetrySample),
                    [
                        {
                            "batch_id": batch.id,
                            "time": s.time,
                            "site": batch.site,
                            "device": batch.device,
                            "asset": batch.asset,
                            "metric": s.metric,
                            "value": s.value,
                            "quality": s.quality,
                        }
                        for s in batch.samples
                    ],
                )
        return AckResult.committed
    except IntegrityError:  # another replica stored the same batch a moment ago
        return AckResult.duplicate
