"""Stored readings and the devices' reported profiles, for `fieldloop rules replay --detection`
(a detection backtest): read-only, and streamed, so a month of a large site's readings goes
through a few thousand rows at a time instead of into memory.

Only the columns of the telemetry contract are named (``telemetry_samples``: time, site,
device, asset, metric, value, quality; ``telemetry_batches``: site, device, profile,
event_time), through ``table()`` constructs rather than the ORM, so the store's physical layout
(a TimescaleDB hypertable, daily partitions, a SQLite table) is none of this module's business.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import (
    Connection,
    Double,
    Engine,
    String,
    column,
    create_engine,
    func,
    inspect,
    select,
    table,
)
from sqlalchemy.engine import make_url

from central.storage.db import normalize_url
from central.storage.types import UTCDateTime

SAMPLES = table(
    "telemetry_samples",
    column("time", UTCDateTime()),
    column("site", String()),
    column("device", String()),
    column("asset", String()),
    column("metric", String()),
    column("value", Double()),
    column("quality", String()),
)
BATCHES = table(
    "telemetry_batches",
    column("site", String()),
    column("device", String()),
    column("profile", String()),
    column("event_time", UTCDateTime()),
    column("received_at", UTCDateTime()),
)

#: (site, device, asset, metric, time, value, quality): a reading with its site, in the order
#: of ``edge_agent.readings.Reading``'s fields after the site
StoredReading = tuple[str, str, str, str, datetime, float, str]


class NoSuchDatabase(Exception):
    """The SQLite file is not there (a new, empty one is not made for a read)."""


class NotCentralsDatabase(Exception):
    """The database has no telemetry_samples table: it is not central's database, or central
    has never started on it (central creates its tables when it starts)."""


@dataclass(frozen=True)
class Scope:
    """Which readings: [start, end), and where given, only these sites, devices, assets."""

    start: datetime
    end: datetime
    sites: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    assets: tuple[str, ...] = ()


def reading_engine(url: str) -> Engine:
    """An engine that only reads. Not ``central.storage.db.make_engine``: on SQLite that one
    takes the write lock at the start of every transaction (right for central's writers), which
    a read of a month of readings would hold against central's ingest; here transactions are
    deferred, and a SQLite file that is not there is an error, not a new empty database."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite":
        name = parsed.database or ""
        if (
            name not in ("", ":memory:")
            and not name.startswith("file:")
            and not Path(name).exists()
        ):
            raise NoSuchDatabase(f"there is no SQLite file {name}")
        return create_engine(parsed, connect_args={"timeout": 30})
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, connect_args={"connect_timeout": 10})
    return create_engine(parsed)


def reports_profiles(conn: Connection) -> bool:
    """Whether telemetry batches carry the device's profile (migration 0009 on); raises
    NotCentralsDatabase if there are no readings to replay at all."""
    tables = inspect(conn)
    if not tables.has_table("telemetry_samples"):
        raise NotCentralsDatabase(NotCentralsDatabase.__doc__)
    if not tables.has_table("telemetry_batches"):
        return False
    return any(c["name"] == "profile" for c in tables.get_columns("telemetry_batches"))


def reported_profiles(conn: Connection, scope: Scope) -> dict[tuple[str, str], str]:
    """(site, device) -> the profile the device's edge named in its latest telemetry batch
    that named one (by event time, then receive time). Read once, before the readings."""
    b = BATCHES.c
    newest = (
        func.row_number()
        .over(partition_by=(b.site, b.device), order_by=(b.event_time.desc(), b.received_at.desc()))
        .label("n")
    )
    q = select(b.site, b.device, b.profile, newest).where(b.profile.is_not(None))
    if scope.sites:
        q = q.where(b.site.in_(scope.sites))
    if scope.devices:
        q = q.where(b.device.in_(scope.devices))
    ranked = q.subquery()
    rows = conn.execute(
        select(ranked.c.site, ranked.c.device, ranked.c.profile).where(ranked.c.n == 1)
    )
    return {(site, device): profile for site, device, profile in rows}


#: The order the readings come in: by device, then time (the metric only to make it total).
#: The detectors need time order per device; a device's readings together keep one device's
#: detector state in use at a time. PostgreSQL sorts the window on the server (spilling to disk
#: if it must); the client holds ``batch`` rows at a time.
ORDER = ("site", "device", "time", "metric")


def stored_readings(
    conn: Connection, scope: Scope, metrics: Collection[str], batch: int = 5000
) -> Iterator[StoredReading]:
    """The readings of ``metrics`` in ``scope``, ordered by (site, device, time), streamed
    ``batch`` rows at a time (a server-side cursor on PostgreSQL)."""
    if not metrics:
        return
    s = SAMPLES.c
    q = (
        select(s.site, s.device, s.asset, s.metric, s.time, s.value, s.quality)
        .where(s.time >= scope.start, s.time < scope.end, s.metric.in_(sorted(metrics)))
        .order_by(*(s[name] for name in ORDER))
    )
    if scope.sites:
        q = q.where(s.site.in_(scope.sites))
    if scope.devices:
        q = q.where(s.device.in_(scope.devices))
    if scope.assets:
        q = q.where(s.asset.in_(scope.assets))
    result = conn.execution_options(yield_per=batch).execute(q)
    try:
        for rows in result.partitions():
            yield from rows  # type: ignore[misc]
    finally:
        result.close()
