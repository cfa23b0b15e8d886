"""Which physical layout the readings table has, found out from the database itself (migration
0009 chose it), and the names Alembic must leave alone (partitions, continuous aggregates)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import NoSuchTableError

from central.telemetry.partitions import PREFIX


class Layout(StrEnum):
    timescaledb = "timescaledb"  # hypertable, compressed chunks, continuous aggregates
    partitioned = "partitioned"  # PostgreSQL daily range partitions, BRIN on time
    plain = "plain"  # SQLite (or a PostgreSQL table made by hand)


def detect(conn: Connection) -> Layout:
    if conn.dialect.name != "postgresql":
        return Layout.plain
    if conn.exec_driver_sql("SELECT to_regclass('telemetry_samples')").scalar() is None:
        # not remembered as "plain": the next try looks again
        raise NoSuchTableError("telemetry_samples (run the migrations: fieldloop central does)")
    has_timescale = conn.exec_driver_sql(
        "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"
    ).scalar()
    if (
        has_timescale
        and conn.exec_driver_sql(
            "SELECT 1 FROM timescaledb_information.hypertables "
            "WHERE hypertable_name = 'telemetry_samples' AND hypertable_schema = current_schema()"
        ).scalar()
    ):
        return Layout.timescaledb
    if conn.exec_driver_sql(
        "SELECT 1 FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partrelid "
        "WHERE c.relname = 'telemetry_samples' "
        "AND c.relnamespace = to_regnamespace(current_schema())::oid"
    ).scalar():
        return Layout.partitioned
    return Layout.plain


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's filter: a day's partition is the store's business, not a model's."""
    return not (type_ == "table" and name is not None and name.startswith(PREFIX))
