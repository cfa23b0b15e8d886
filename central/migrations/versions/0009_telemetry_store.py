"""telemetry store: a TimescaleDB hypertable, daily partitions or a plain SQLite table; quarantine

The readings table loses its id and batch id (the inbox keeps those) so it can be a hypertable
or partitioned by time and written with COPY. Which layout: FIELDLOOP_TELEMETRY_LAYOUT
(``auto``, the default: TimescaleDB where the extension can be created, else partitions;
``timescaledb``: fail if it cannot; ``partitioned``: never TimescaleDB). Readings already
stored are moved over. Downgrading drops the readings (the old table had ids they never had).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 02:00:00
"""

from __future__ import annotations

import logging
import os

import sqlalchemy as sa
from alembic import op

import central.storage.types
from central.telemetry.partitions import days_of, ensure_partitions

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_T = central.storage.types.UTCDateTime
log = logging.getLogger("central.migrations")
_COLUMNS = "time, site, device, asset, metric, value, quality"


def _columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("time", _T(timezone=True), nullable=False),
        sa.Column("site", sa.String(length=128), nullable=False),
        sa.Column("device", sa.String(length=128), nullable=False),
        sa.Column("asset", sa.String(length=128), nullable=False),
        sa.Column("metric", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("quality", sa.String(length=16), nullable=False),
    ]


def _timescale(conn: sa.Connection) -> bool:
    """Whether to make a hypertable: the extension is installed, preloaded and creatable."""
    want = os.environ.get("FIELDLOOP_TELEMETRY_LAYOUT", "auto").strip() or "auto"
    if want not in ("auto", "timescaledb", "partitioned"):
        raise ValueError(
            f"FIELDLOOP_TELEMETRY_LAYOUT={want!r}: use auto, timescaledb or partitioned"
        )
    if want == "partitioned":
        return False
    why = ""
    available = conn.exec_driver_sql(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).scalar()
    if not available:
        why = "the timescaledb extension is not installed on this server"
    elif "timescaledb" not in str(conn.exec_driver_sql("SHOW shared_preload_libraries").scalar()):
        why = "timescaledb is installed but not in shared_preload_libraries"
    else:
        try:
            with conn.begin_nested():
                conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except sa.exc.DBAPIError as exc:
            why = f"CREATE EXTENSION timescaledb failed: {str(exc.orig).strip()}"
    if why and want == "timescaledb":
        raise RuntimeError(f"FIELDLOOP_TELEMETRY_LAYOUT=timescaledb, but {why}")
    if why:
        log.debug("telemetry: plain PostgreSQL partitions (%s)", why)  # the store says it at start
    return not why


def upgrade() -> None:
    conn = op.get_bind()
    pg = conn.dialect.name == "postgresql"
    op.create_table(
        "telemetry_quarantine",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=128), nullable=False),
        sa.Column("device", sa.String(length=128), nullable=False),
        sa.Column("asset", sa.String(length=128), nullable=False),
        sa.Column("metric", sa.String(length=128), nullable=True),
        sa.Column("time", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("received_at", _T(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_quarantine_received", "telemetry_quarantine", ["received_at"])

    # The old table steps aside (its index names are taken on PostgreSQL), the new one comes in.
    op.drop_index("ix_telemetry_asset_metric_time", table_name="telemetry_samples")
    op.drop_index("ix_telemetry_samples_batch_id", table_name="telemetry_samples")
    op.rename_table("telemetry_samples", "telemetry_samples_0002")
    hypertable = pg and _timescale(conn)
    if pg and not hypertable:
        cols = ", ".join(f"{c.name} {c.type.compile(conn.dialect)} NOT NULL" for c in _columns())
        op.execute(f"CREATE TABLE telemetry_samples ({cols}) PARTITION BY RANGE (time)")
    else:
        op.create_table("telemetry_samples", *_columns())
    if hypertable:
        _make_hypertable()
    op.create_index(
        "ix_telemetry_asset_metric_time", "telemetry_samples", ["asset", "metric", "time"]
    )
    op.create_index(
        "ix_telemetry_time_brin", "telemetry_samples", ["time"], postgresql_using="brin"
    )
    if pg and not hypertable:
        days = conn.exec_driver_sql(
            "SELECT DISTINCT date_trunc('day', time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' "
            "FROM telemetry_samples_0002"
        ).scalars()
        ensure_partitions(conn, days_of(days))
    op.execute(
        f"INSERT INTO telemetry_samples ({_COLUMNS}) SELECT {_COLUMNS} FROM telemetry_samples_0002"
    )
    op.drop_table("telemetry_samples_0002")
    # After the old table (its foreign key) is gone: SQLite rebuilds the table to alter it.
    with op.batch_alter_table("telemetry_batches") as batch:
        batch.add_column(sa.Column("profile", sa.String(length=128), nullable=True))
        batch.add_column(
            sa.Column("quarantined", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    op.create_index("ix_telemetry_batches_received", "telemetry_batches", ["received_at"])
    if hypertable:
        _make_aggregates()


def _make_hypertable() -> None:
    # One chunk a day: a day of a site's readings is the unit that is compressed and dropped.
    op.execute(
        "SELECT create_hypertable('telemetry_samples', 'time', "
        "chunk_time_interval => INTERVAL '1 day', create_default_indexes => false)"
    )
    # Compressed per device and metric, newest first: a series reads one segment.
    op.execute(
        "ALTER TABLE telemetry_samples SET (timescaledb.compress, "
        "timescaledb.compress_segmentby = 'device, metric', "
        "timescaledb.compress_orderby = 'time DESC')"
    )


def _make_aggregates() -> None:
    # Sums and counts, not averages, so a coarser bucket averages exactly. Real-time: the
    # newest buckets not yet materialised are computed from the raw rows at query time.
    op.execute(
        "CREATE MATERIALIZED VIEW telemetry_1m WITH (timescaledb.continuous, "
        "timescaledb.materialized_only = false) AS "
        "SELECT time_bucket(INTERVAL '1 minute', time) AS bucket, asset, metric, "
        "sum(value) AS total, count(*) AS n, min(value) AS low, max(value) AS high "
        "FROM telemetry_samples GROUP BY bucket, asset, metric WITH NO DATA"
    )
    op.execute(
        "CREATE MATERIALIZED VIEW telemetry_1h WITH (timescaledb.continuous, "
        "timescaledb.materialized_only = false) AS "
        "SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket, asset, metric, "
        "sum(total) AS total, sum(n) AS n, min(low) AS low, max(high) AS high "
        "FROM telemetry_1m GROUP BY 1, asset, metric WITH NO DATA"
    )


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        op.execute("DROP MATERIALIZED VIEW IF EXISTS telemetry_1h CASCADE")
        op.execute("DROP MATERIALIZED VIEW IF EXISTS telemetry_1m CASCADE")
        op.execute("DROP TABLE telemetry_samples CASCADE")  # with its partitions
    else:
        op.drop_table("telemetry_samples")
    op.drop_index("ix_telemetry_batches_received", table_name="telemetry_batches")
    with op.batch_alter_table("telemetry_batches") as batch:
        batch.drop_column("quarantined")
        batch.drop_column("profile")
    op.create_table(
        "telemetry_samples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        *_columns(),
        sa.ForeignKeyConstraint(["batch_id"], ["telemetry_batches.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_telemetry_asset_metric_time", "telemetry_samples", ["asset", "metric", "time"]
    )
    op.create_index("ix_telemetry_samples_batch_id", "telemetry_samples", ["batch_id"])
    op.drop_index("ix_quarantine_received", table_name="telemetry_quarantine")
    op.drop_table("telemetry_quarantine")
