"""Daily range partitions of ``telemetry_samples`` on PostgreSQL without TimescaleDB: created
before the rows that need them arrive, dropped whole when they pass the retention (a DROP, not
a DELETE that leaves dead rows to vacuum)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection

TABLE = "telemetry_samples"
PREFIX = f"{TABLE}_p"
_NAME = re.compile(rf"^{PREFIX}(\d{{8}})$")
PARTITION_LOCK = 0x46_4C_54_50  # "FLTP": centrals creating the same day's partition take turns


def partition_name(day: date) -> str:
    return f"{PREFIX}{day:%Y%m%d}"


def day_of(name: str) -> date | None:
    m = _NAME.match(name)
    return datetime.strptime(m.group(1), "%Y%m%d").date() if m else None


def days_of(times: Iterable[datetime]) -> set[date]:
    return {t.astimezone(UTC).date() for t in times}


def existing(conn: Connection) -> set[date]:
    names = conn.exec_driver_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE p.relname = %(t)s AND p.relnamespace = to_regnamespace(current_schema())::oid",
        {"t": TABLE},
    ).scalars()
    return {d for d in map(day_of, names) if d is not None}


def ensure_partitions(conn: Connection, days: Iterable[date]) -> list[date]:
    """Create the partitions of ``days`` that do not exist yet (in the caller's transaction);
    the days created. Several centrals may ask for the same day at once: an advisory lock makes
    them take turns, and the second finds it there."""
    wanted = set(days)
    if not wanted:
        return []
    missing = wanted - existing(conn)
    if not missing:
        return []
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PARTITION_LOCK})")
    missing -= existing(conn)
    for day in sorted(missing):
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = start + timedelta(days=1)
        conn.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF {TABLE} "
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )
    return sorted(missing)


def drop_before(conn: Connection, cutoff: date) -> list[date]:
    """Drop the partitions whose whole day is before ``cutoff``; the days dropped."""
    old = sorted(d for d in existing(conn) if d < cutoff)
    if old:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PARTITION_LOCK})")
    for day in old:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {partition_name(day)}")
    return old
