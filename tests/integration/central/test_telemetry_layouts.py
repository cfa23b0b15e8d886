"""The telemetry store on its three layouts: SQLite, PostgreSQL daily partitions, and a
TimescaleDB hypertable (FIELDLOOP_TEST_TIMESCALE_URL; skipped when unset). The same readings
give the same series on each; partitions come and go by day; readings stored before the store
existed are moved into it; and a failure writes nothing half-done."""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from central.ingest.telemetry import store_batches
from central.storage.db import make_engine, migrate, session_factory
from central.storage.models import TelemetryBatchRow, TelemetryQuarantine, TelemetrySample
from central.telemetry import partitions, series
from central.telemetry.layout import Layout, detect
from central.telemetry.store import Retention, TelemetryStore, store_for
from fieldloop.messages import ReceivedTelemetry

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 29, 22, 30, tzinfo=UTC)  # three hours across midnight UTC
EVERY = 10  # seconds between readings
N = 3 * 3600 // EVERY
RECEIVED = T0 + timedelta(hours=3, minutes=1)


def value(metric: str, i: int) -> float:
    return round(20 + 5 * math.sin(i / 37) + (0.5 if metric == "current" else 0) * (i % 7), 3)


def batches(device: str = "ch-1", asset: str = "CH-01", per_batch: int = 90) -> list[Any]:
    out = []
    for start in range(0, N, per_batch):
        samples = [
            {"metric": m, "time": (T0 + timedelta(seconds=EVERY * i)).isoformat(),
             "value": value(m, i)}
            for i in range(start, min(start + per_batch, N))
            for m in ("temp", "current")
        ]  # fmt: skip
        doc = {"id": f"{device}-{start}", "site": "plant-1", "device": device, "asset": asset,
               "event_time": samples[-1]["time"], "seq": start, "samples": samples}  # fmt: skip
        out.append(ReceivedTelemetry.model_validate(doc))
    return out


def expected(metric: str, step: int, start: datetime, end: datetime) -> list[tuple[Any, ...]]:
    buckets: dict[datetime, list[float]] = defaultdict(list)
    for i in range(N):
        t = T0 + timedelta(seconds=EVERY * i)
        if start <= t < end:
            b = datetime.fromtimestamp(int(t.timestamp()) // step * step, UTC)
            buckets[b].append(value(metric, i))
    return [(b, sum(v) / len(v), min(v), max(v), len(v)) for b, v in sorted(buckets.items())]


def as_tuples(found: series.Series) -> list[tuple[Any, ...]]:
    return [(p.time, p.avg, p.low, p.high, p.count) for p in found.points]


@pytest.fixture
def engine(any_store_url: str) -> Iterator[Engine]:
    engine = make_engine(any_store_url)
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _layout_wanted(engine: Engine) -> Layout:
    if engine.dialect.name != "postgresql":
        return Layout.plain
    return (
        Layout.timescaledb if make_url(str(engine.url)).port == _ts_port() else (Layout.partitioned)
    )


def _ts_port() -> int | None:
    import os

    url = os.environ.get("FIELDLOOP_TEST_TIMESCALE_URL")
    return make_url(url).port if url else None


def _refresh_aggregates(engine: Engine) -> None:
    """TimescaleDB's background refresh is a policy job; a test runs it now, by hand (outside
    a transaction, as refresh_continuous_aggregate must be)."""
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for view in ("telemetry_1m", "telemetry_1h"):
            conn.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)")


def test_the_layout_is_found_and_said(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="central.telemetry")
    store = TelemetryStore.open(engine)
    assert store.layout is _layout_wanted(engine)
    said = [r.getMessage() for r in caplog.records if r.name == "central.telemetry"]
    assert said == [f"telemetry store: {store.describe()}"]
    assert {
        Layout.plain: "a plain table",
        Layout.partitioned: "daily range partitions with a BRIN index",
        Layout.timescaledb: "hypertable",
    }[store.layout] in said[0]


def test_the_same_readings_give_the_same_series_everywhere(engine: Engine) -> None:
    sessions = session_factory(engine)
    assert store_batches(sessions, batches(), RECEIVED) == ["committed"] * len(batches())
    store = store_for(engine)
    if store.layout is Layout.timescaledb:
        _refresh_aggregates(engine)
    start, end = T0, T0 + timedelta(hours=3)
    with engine.connect() as conn:
        for step, source in ((60, "telemetry_1m"), (3600, "telemetry_1h"), (7, None), (900, None)):
            got_source, found = series.series(
                conn, store.layout, "CH-01", ["temp", "current"], start, end, step
            )
            want_source = source if store.layout is Layout.timescaledb and source else (
                "telemetry_1m" if store.layout is Layout.timescaledb and step % 60 == 0
                else "telemetry_samples"
            )  # fmt: skip
            assert got_source == want_source
            assert [s.metric for s in found] == ["current", "temp"]
            a, b = series.align(start, end, step)
            for s in found:
                want = expected(s.metric, step, a, b)
                got = as_tuples(s)
                assert [g[0] for g in got] == [w[0] for w in want], step
                for g, w in zip(got, want, strict=True):
                    assert g[1] == pytest.approx(w[1], rel=1e-12)
                    assert g[2:] == w[2:]
        (only,) = series.series(conn, store.layout, "CH-01", ["temp"], start, end, 3600)[1]
        assert only.metric == "temp"
        assert series.series(conn, store.layout, "CH-99", [], start, end, 60)[1] == []
        raw = series.readings(conn, "CH-01", ["temp"], T0, T0 + timedelta(seconds=35), 100)
        assert [(p.time, p.avg) for p in raw[0].points] == [
            (T0 + timedelta(seconds=EVERY * i), value("temp", i)) for i in range(4)
        ]
        assert series.count(conn, "CH-01", [], T0, T0 + timedelta(hours=3)) == 2 * N


def test_partitions_come_by_day_and_go_whole(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        migrate(engine)
        store_batches(session_factory(engine), batches(), RECEIVED)
        store = store_for(engine)
        assert store.layout is Layout.partitioned
        with engine.begin() as conn:
            assert partitions.existing(conn) == {T0.date(), (T0 + timedelta(days=1)).date()}
            store.retention = Retention(keep=timedelta(days=1), late=timedelta(days=1))
            done = store.maintain(conn, datetime(2026, 12, 1, 0, 30, tzinfo=UTC))
        assert done is not None and "dropped 1 partition(s) up to 2026-11-29" in done
        assert "2026-12-01, 2026-12-02, 2026-12-03" in done
        with engine.connect() as conn:
            days = partitions.existing(conn)
            left = conn.execute(select(func.min(TelemetrySample.c.time))).scalar_one()
        assert min(days) == (T0 + timedelta(days=1)).date() and len(days) == 4
        assert left == datetime(2026, 11, 30, tzinfo=UTC)  # the 29th went as one DROP
        # Writing to a day that was dropped meanwhile (by another central): it is made again.
        assert store_batches(session_factory(engine), batches("ch-2", "CH-02"), RECEIVED)
        with engine.connect() as conn:
            assert T0.date() in partitions.existing(conn)
    finally:
        engine.dispose()


def test_sqlite_retention_deletes_expired_rows(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        migrate(engine)
        store_batches(session_factory(engine), batches(), RECEIVED)
        store = TelemetryStore(Layout.plain, Retention(keep=timedelta(days=1)))
        with engine.begin() as conn:
            done = store.maintain(conn, datetime(2026, 12, 1, 0, 0, tzinfo=UTC))
            left = conn.execute(select(func.count()).select_from(TelemetrySample)).scalar_one()
        assert done == f"deleted {2 * 540} reading(s) before 2026-11-30"  # 22:30 to midnight
        assert left == 2 * (N - 540)
    finally:
        engine.dispose()


def test_centrals_making_the_same_days_partitions_at_once(pg_url: str) -> None:
    """Four processes' worth of engines write readings of the same new days at the same moment:
    every batch is stored, each day's partition made once."""
    engines = [make_engine(pg_url) for _ in range(4)]
    try:
        migrate(engines[0])
        barrier = threading.Barrier(len(engines))
        results: list[Any] = []

        def write(k: int) -> None:
            mine = batches(f"ch-{k}", f"CH-{k}", per_batch=N)
            barrier.wait()
            results.append(store_batches(session_factory(engines[k]), mine, RECEIVED))

        threads = [threading.Thread(target=write, args=(k,)) for k in range(len(engines))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == [["committed"]] * len(engines)
        with engines[0].connect() as conn:
            assert len(partitions.existing(conn)) == 2
            total = conn.execute(select(func.count()).select_from(TelemetrySample)).scalar_one()
        assert total == len(engines) * 2 * N
    finally:
        for e in engines:
            e.dispose()


def test_a_failed_write_leaves_nothing_half_done(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate(engine)
        sessions = session_factory(engine)
        store_for(engine)
        bad = batches()[0].model_copy(update={"samples": [
            *batches()[0].samples, {"metric": "temp", "time": "1970-01-01T00:00:00Z", "value": 1}
        ]})  # fmt: skip
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE telemetry_samples RENAME TO telemetry_samples_x"))
        with pytest.raises(SQLAlchemyError):
            store_batches(sessions, [bad], RECEIVED)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE telemetry_samples_x RENAME TO telemetry_samples"))
            assert conn.execute(select(func.count()).select_from(TelemetryBatchRow)).scalar() == 0
            assert conn.execute(select(func.count()).select_from(TelemetryQuarantine)).scalar() == 0
        # The edge resends: now all of it, once.
        assert store_batches(sessions, [bad], RECEIVED) == ["committed"]
        with sessions() as s:
            row = s.get(TelemetryBatchRow, bad.id)
            assert row is not None and (row.samples, row.quarantined) == (180, 1)
    finally:
        engine.dispose()


def test_readings_stored_before_the_store_are_moved_into_it(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        migrate(engine, "0008")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO telemetry_batches (id, site, device, asset, seq, event_time, "
                    "received_at, samples) VALUES ('b1', 's', 'd', 'a', 1, :t, :t, 2)"
                ),
                {"t": T0.replace(tzinfo=None) if conn.dialect.name == "sqlite" else T0},
            )
            for k, t in enumerate((T0, T0 + timedelta(days=1))):
                conn.execute(
                    text(
                        "INSERT INTO telemetry_samples (batch_id, time, site, device, asset, "
                        "metric, value, quality) VALUES ('b1', :t, 's', 'd', 'a', 'temp', :v, "
                        "'good')"
                    ),
                    {"t": t.replace(tzinfo=None) if conn.dialect.name == "sqlite" else t,
                     "v": k + 0.5},
                )  # fmt: skip
        migrate(engine)
        with engine.connect() as conn:
            rows = conn.execute(
                select(TelemetrySample.c.time, TelemetrySample.c.value).order_by("time")
            ).all()
            assert detect(conn) is _layout_wanted(engine)
            if detect(conn) is Layout.partitioned:
                assert partitions.existing(conn) == {T0.date(), (T0 + timedelta(days=1)).date()}
            inbox = conn.execute(select(TelemetryBatchRow.quarantined)).scalar_one()
        assert rows == [(T0, 0.5), (T0 + timedelta(days=1), 1.5)]
        assert inbox == 0
    finally:
        engine.dispose()


def test_timescale_compression_retention_and_aggregates(timescale_url: str) -> None:
    engine = make_engine(timescale_url)
    try:
        migrate(engine)
        store = TelemetryStore.open(
            engine, Retention(keep=timedelta(days=90), compress_after=timedelta(days=3))
        )
        assert store.layout is Layout.timescaledb
        with engine.connect() as conn:
            segment = (
                conn.execute(
                    text(
                        "SELECT attname FROM timescaledb_information.compression_settings "
                        "WHERE hypertable_name = 'telemetry_samples' AND segmentby_column_index "
                        "IS NOT NULL ORDER BY segmentby_column_index"
                    )
                )
                .scalars()
                .all()
            )
            jobs = dict(
                conn.execute(
                    text(
                        "SELECT proc_name, config::text FROM timescaledb_information.jobs "
                        "WHERE hypertable_name IN ('telemetry_samples') "
                    )
                ).all()
            )
            views = conn.execute(
                text("SELECT view_name FROM timescaledb_information.continuous_aggregates "
                     "ORDER BY view_name")
            ).scalars().all()  # fmt: skip
        assert segment == ["device", "metric"]
        assert "7776000" in jobs["policy_retention"] or "90 days" in jobs["policy_retention"]
        assert "259200" in jobs["policy_compression"] or "3 days" in jobs["policy_compression"]
        assert views == ["telemetry_1h", "telemetry_1m"]

        sessions = session_factory(engine)
        store_batches(sessions, batches(), RECEIVED)
        dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as conn:
            chunks = conn.execute(
                "SELECT compress_chunk(c) FROM show_chunks('telemetry_samples') c"
            ).fetchall()
        assert len(chunks) == 2
        # A late reading (an edge back online) into a compressed chunk, then the aggregates.
        late = batches("ch-late", "CH-01", per_batch=N)[0]
        assert store_batches(sessions, [late], RECEIVED) == ["committed"]
        _refresh_aggregates(engine)
        with engine.connect() as conn:
            source, found = series.series(
                conn, Layout.timescaledb, "CH-01", ["temp"], T0, T0 + timedelta(hours=3), 3600
            )
        assert source == "telemetry_1h"
        assert [p.count for p in found[0].points] == [
            2 * w[4] for w in expected("temp", 3600, T0, T0 + timedelta(hours=3))
        ]
    finally:
        engine.dispose()


def test_the_inbox_forgets_batch_ids_no_resend_could_still_need(db_url: str) -> None:
    """A batch id must outlive any resend of it; a resend older than ``late`` is quarantined as
    too old, so its id may go two days after that, and the inbox does not grow for ever."""
    engine = make_engine(db_url)
    try:
        migrate(engine)
        sessions = session_factory(engine)
        store_batches(sessions, batches(), RECEIVED)
        store = store_for(engine)
        late = store.retention.late
        with engine.begin() as conn:
            store.maintain(conn, RECEIVED + late + timedelta(days=1))
            kept = conn.execute(select(func.count()).select_from(TelemetryBatchRow)).scalar()
            done = store.maintain(conn, RECEIVED + late + timedelta(days=2, seconds=1))
            gone = conn.execute(select(func.count()).select_from(TelemetryBatchRow)).scalar()
        assert kept == len(batches()) and gone == 0
        assert done is not None and f"forgot {len(batches())} telemetry batch id(s)" in done
        # Its resend now: every reading quarantined as too old, none stored twice.
        again = store_batches(sessions, batches()[:1], RECEIVED + late + timedelta(days=2))
        assert again == ["committed"]
        with sessions() as s:
            row = s.get(TelemetryBatchRow, batches()[0].id)
            assert row is not None and (row.samples, row.quarantined) == (0, 180)
    finally:
        engine.dispose()
