"""The telemetry store: one interface over three layouts (``central.telemetry.layout``).

Rows go in with psycopg's binary COPY on PostgreSQL (a hypertable or daily partitions) and one
executemany on SQLite, always in the caller's transaction, so a batch's readings, its quarantined
readings and its inbox row commit together or not at all. Retention, compression and the
continuous aggregates' refresh are TimescaleDB policies where it is there; elsewhere
``maintain`` (run by central's housekeeping) creates tomorrow's partitions and drops whole
expired ones (or deletes expired rows on SQLite)."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, Engine, delete, insert
from sqlalchemy.exc import DBAPIError

from central.storage.models import TelemetryBatchRow, TelemetryQuarantine, TelemetrySample
from central.telemetry import partitions
from central.telemetry.layout import Layout, detect

log = logging.getLogger("central.telemetry")

#: (time, site, device, asset, metric, value, quality): the columns, in COPY order
Row = tuple[datetime, str, str, str, str, float, str]
COLUMNS = ("time", "site", "device", "asset", "metric", "value", "quality")
_COPY = f"COPY telemetry_samples ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ["timestamptz", "varchar", "varchar", "varchar", "varchar", "float8", "varchar"]
AGGREGATES = {60: "telemetry_1m", 3600: "telemetry_1h"}  # seconds -> continuous aggregate
QUARANTINE_KEEP = timedelta(days=90)
INBOX_MARGIN = timedelta(days=2)  # beyond the oldest reading accepted
POLICY_LOCK = 0x46_4C_54_53  # "FLTS": one central at a time sets the TimescaleDB policies


@dataclass(frozen=True)
class Retention:
    keep: timedelta = timedelta(days=400)  # a year and a season: compare with last year
    compress_after: timedelta = timedelta(days=7)
    late: timedelta = timedelta(days=30)  # the oldest reading accepted (quarantine's max_age)


@dataclass
class TelemetryStore:
    layout: Layout
    retention: Retention = field(default_factory=Retention)
    version: str | None = None  # TimescaleDB's
    _days: set[date] = field(default_factory=set)  # partitions known to exist
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, engine: Engine, retention: Retention | None = None) -> TelemetryStore:
        """Find the layout the migrations made, set TimescaleDB's policies, log the choice."""
        retention = retention or Retention()
        if engine.dialect.name != "postgresql":
            store = cls(Layout.plain, retention)
            log.info("telemetry store: %s", store.describe())
            return store
        with engine.begin() as conn:
            layout = detect(conn)
            version = None
            if layout is Layout.timescaledb:
                version = conn.exec_driver_sql(
                    "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
                ).scalar()
        store = cls(layout, retention, version)
        if layout is Layout.timescaledb:
            try:
                with engine.begin() as conn:
                    _timescale_policies(conn, retention)
            except DBAPIError as exc:  # readings still go in; the policies are said to be off
                log.error("TimescaleDB policies could not be set (%s); the old ones stand", exc)
        log.info("telemetry store: %s", store.describe())
        return store

    def describe(self) -> str:
        keep = f"kept {self.retention.keep.days} days"
        if self.layout is Layout.timescaledb:
            return (
                f"TimescaleDB {self.version} hypertable (1-day chunks compressed after "
                f"{self.retention.compress_after.days} days, by device and metric; {keep}; "
                "continuous aggregates telemetry_1m and telemetry_1h)"
            )
        if self.layout is Layout.partitioned:
            return (
                f"PostgreSQL, daily range partitions with a BRIN index on time ({keep}; "
                "TimescaleDB not in use)"
            )
        return f"a plain table ({keep})"

    def write(self, conn: Connection, rows: Sequence[Row]) -> None:
        """Append ``rows`` in the caller's transaction."""
        if not rows:
            return
        try:
            if self.layout is Layout.partitioned:
                self._partitions_for(conn, rows)
            if conn.dialect.name == "postgresql":
                _copy(conn, rows)
            else:
                conn.execute(
                    insert(TelemetrySample), [dict(zip(COLUMNS, r, strict=True)) for r in rows]
                )
        except Exception:
            with self._lock:
                self._days.clear()  # a partition we thought there may have been dropped
            raise

    def _partitions_for(self, conn: Connection, rows: Sequence[Row]) -> None:
        times = {r[0] for r in rows}  # the readings of one poll share one time
        days = partitions.days_of(times)
        with self._lock:
            missing = days - self._days
        if missing:
            partitions.ensure_partitions(conn, missing)
            with self._lock:
                self._days |= missing

    def maintain(self, conn: Connection, now: datetime) -> str | None:
        """Housekeeping: partitions for today and the next two days, expired readings and
        quarantine gone. What was done, in words (None: nothing)."""
        done: list[str] = []
        cutoff = now - self.retention.keep
        if self.layout is Layout.partitioned:
            today = now.astimezone(UTC).date()
            made = partitions.ensure_partitions(conn, {today + timedelta(days=i) for i in range(3)})
            dropped = partitions.drop_before(conn, cutoff.astimezone(UTC).date())
            with self._lock:
                self._days -= set(dropped)
            if made:
                done.append(f"created partitions for {', '.join(map(str, made))}")
            if dropped:
                done.append(f"dropped {len(dropped)} partition(s) up to {dropped[-1]}")
        elif self.layout is Layout.plain:
            gone = conn.execute(delete(TelemetrySample).where(TelemetrySample.c.time < cutoff))
            if gone.rowcount:
                done.append(f"deleted {gone.rowcount} reading(s) before {cutoff:%Y-%m-%d}")
        # The inbox only has to outlive a resend: one older than ``late`` is quarantined as
        # too old whatever its id, so nothing is stored twice without the row.
        inbox = conn.execute(
            delete(TelemetryBatchRow).where(
                TelemetryBatchRow.received_at < now - self.retention.late - INBOX_MARGIN
            )
        )
        if inbox.rowcount:
            done.append(f"forgot {inbox.rowcount} telemetry batch id(s)")
        q = conn.execute(
            delete(TelemetryQuarantine).where(
                TelemetryQuarantine.received_at < now - QUARANTINE_KEEP
            )
        )
        if q.rowcount:
            done.append(f"forgot {q.rowcount} quarantined reading(s)")
        return "; ".join(done) or None


def _copy(conn: Connection, rows: Sequence[Row]) -> None:
    import psycopg

    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        with driver.cursor() as cur, cur.copy(_COPY) as copy:
            copy.set_types(_COPY_TYPES)
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as exc:
        # As SQLAlchemy would have raised it: callers handle a database failure in one way.
        raise DBAPIError(_COPY, None, exc) from exc


def _timescale_policies(conn: Connection, r: Retention) -> None:
    """Compression, retention and refresh policies as the settings say (several centrals
    starting at once set them one after another; the last one's are the same)."""
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({POLICY_LOCK})")

    def interval(d: timedelta) -> str:
        return (
            f"{d.days} days"
            if d % timedelta(days=1) == timedelta(0)
            else (f"{int(d.total_seconds())} seconds")
        )

    for remove, add in (
        (
            "remove_compression_policy('telemetry_samples', if_exists => true)",
            "add_compression_policy('telemetry_samples', "
            f"compress_after => INTERVAL '{interval(r.compress_after)}')",
        ),
        (
            "remove_retention_policy('telemetry_samples', if_exists => true)",
            "add_retention_policy('telemetry_samples', "
            f"drop_after => INTERVAL '{interval(r.keep)}')",
        ),
        (
            # Late readings (an edge back after days offline) are refreshed in too: the window
            # reaches back as far as a reading is accepted.
            "remove_continuous_aggregate_policy('telemetry_1m', if_exists => true)",
            "add_continuous_aggregate_policy('telemetry_1m', "
            f"start_offset => INTERVAL '{interval(r.late + timedelta(days=1))}', "
            "end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute')",
        ),
        (
            "remove_continuous_aggregate_policy('telemetry_1h', if_exists => true)",
            "add_continuous_aggregate_policy('telemetry_1h', "
            f"start_offset => INTERVAL '{interval(r.late + timedelta(days=2))}', "
            "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '15 minutes')",
        ),
    ):
        conn.exec_driver_sql(f"SELECT {remove}")
        conn.exec_driver_sql(f"SELECT {add}")


_STORES: weakref.WeakKeyDictionary[Engine, TelemetryStore] = weakref.WeakKeyDictionary()
_STORES_LOCK = threading.Lock()


def store_for(engine: Engine, retention: Retention | None = None) -> TelemetryStore:
    """The store of ``engine``'s database, opened once per engine."""
    with _STORES_LOCK:
        store = _STORES.get(engine)
        if store is None:
            store = _STORES[engine] = TelemetryStore.open(engine, retention)
        return store
