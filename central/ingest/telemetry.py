"""Storing telemetry batches exactly once by their id: many batches in one transaction (one
commit, one fsync on SQLite, for a whole burst), or one batch on its own.

Each reading is screened first (``central.domain.quarantine``): the good ones go to the
telemetry store, the others to ``telemetry_quarantine`` with their reason, and the batch's inbox
row counts both, all in the one transaction."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from central.domain.quarantine import Limits, Screened, screen
from central.storage.models import TelemetryBatchRow, TelemetryQuarantine
from central.telemetry.profiles import ProfileMetrics
from central.telemetry.store import Row, store_for
from fieldloop.messages import AckResult, ReceivedTelemetry, TelemetryBatch
from fieldloop.profiles import default_profiles_dir

log = logging.getLogger("central.ingest")
Batch = TelemetryBatch | ReceivedTelemetry


@dataclass
class Screening:
    """What a reading is held to: how far its time may be from central's clock, and its
    device profile's metrics."""

    limits: Limits = field(default_factory=Limits)
    profiles: ProfileMetrics = field(default_factory=lambda: ProfileMetrics(default_profiles_dir()))
    quarantined: Counter[str] = field(default_factory=Counter)  # by reason, since start


DEFAULT_SCREENING = Screening()


def store_batch(
    factory: sessionmaker[Session],
    batch: Batch,
    received_at: datetime,
    screening: Screening | None = None,
) -> AckResult:
    """One batch in a transaction of its own: ``committed``, or ``duplicate`` for a known id."""
    try:
        return _store(factory, [batch], received_at, screening or DEFAULT_SCREENING)[0]
    except IntegrityError:  # another replica stored the same batch a moment ago
        return AckResult.duplicate


def store_batches(
    factory: sessionmaker[Session],
    batches: Sequence[Batch],
    received_at: datetime,
    screening: Screening | None = None,
) -> list[AckResult]:
    """One result per batch, in order: ``committed`` for the first copy of an id, ``duplicate``
    for an id already stored or earlier in ``batches``. All in one transaction."""
    if not batches:
        return []
    screening = screening or DEFAULT_SCREENING
    try:
        return _store(factory, batches, received_at, screening)
    except IntegrityError:
        # Another replica stored one of these ids between our lookup and our insert. The whole
        # transaction is gone; batch by batch, each result is exact again.
        return [store_batch(factory, batch, received_at, screening) for batch in batches]


def _store(
    factory: sessionmaker[Session],
    batches: Sequence[Batch],
    received_at: datetime,
    screening: Screening,
) -> list[AckResult]:
    with factory() as session, session.begin():
        ids = {batch.id for batch in batches}
        seen = set(
            session.scalars(select(TelemetryBatchRow.id).where(TelemetryBatchRow.id.in_(ids)))
        )
        results: list[AckResult] = []
        new: list[Batch] = []
        for batch in batches:
            if batch.id in seen:
                results.append(AckResult.duplicate)
            else:
                seen.add(batch.id)
                new.append(batch)
                results.append(AckResult.committed)
        if not new:
            return results
        screened = [
            screen(b.samples, received_at, screening.limits, screening.profiles.metrics(b.profile))
            for b in new
        ]
        # Core statements on the connection: no ORM object nor ORM bulk bookkeeping per row,
        # which for a burst's 10,000 samples would cost more than the commit.
        conn = session.connection()
        conn.execute(
            insert(TelemetryBatchRow),
            [
                {
                    "id": b.id,
                    "site": b.site,
                    "device": b.device,
                    "asset": b.asset,
                    "profile": b.profile,
                    "seq": b.seq,
                    "event_time": b.event_time,
                    "received_at": received_at,
                    "samples": len(s.good),
                    "quarantined": len(s.bad),
                }
                for b, s in zip(new, screened, strict=True)
            ],
        )
        rows: list[Row] = [
            (r.time, b.site, b.device, b.asset, r.metric, r.value, r.quality)
            for b, s in zip(new, screened, strict=True)
            for r in s.good
        ]
        store_for(conn.engine).write(conn, rows)
        bad = [
            {
                "batch_id": b.id,
                "site": b.site,
                "device": b.device,
                "asset": b.asset,
                "metric": q.metric,
                "time": q.time,
                "value": q.value,
                "reason": q.reason.value,
                "detail": q.detail,
                "received_at": received_at,
            }
            for b, s in zip(new, screened, strict=True)
            for q in s.bad
        ]
        if bad:
            conn.execute(insert(TelemetryQuarantine), bad)
    if bad:
        _tell(new, screened, screening)
    return results


def _tell(batches: Sequence[Batch], screened: Sequence[Screened], screening: Screening) -> None:
    for b, s in zip(batches, screened, strict=True):
        if s.bad:
            counts = s.counts()
            screening.quarantined.update(counts)
            log.warning(
                "quarantined %d of %d reading(s) of %s/%s (batch %s): %s; first: %s",
                len(s.bad),
                len(s.bad) + len(s.good),
                b.site,
                b.device,
                b.id,
                ", ".join(f"{n} {reason}" for reason, n in counts.most_common()),
                s.bad[0].detail,
            )
