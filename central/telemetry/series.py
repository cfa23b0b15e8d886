"""Reading the store back: a downsampled series per metric (average, low, high and count per
step), from TimescaleDB's continuous aggregates when the step is whole minutes or hours, from
the readings otherwise; and the raw readings of a short window.

Buckets start at whole multiples of the step since 1970-01-01 UTC on every database, so the same
question gets the same buckets on SQLite, PostgreSQL and TimescaleDB."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Integer, bindparam, cast, func, select, text

from central.storage.models import TelemetrySample as T
from central.telemetry.layout import Layout
from central.telemetry.store import AGGREGATES

#: the steps offered when none is asked for, shortest first
STEPS = (1, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400)
MAX_POINTS = 10_000  # per metric
TARGET_POINTS = 500  # what a chosen step aims for
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Point:
    time: datetime
    avg: float
    low: float
    high: float
    count: int


@dataclass(slots=True)
class Series:
    metric: str
    points: list[Point] = field(default_factory=list)


def choose_step(span: timedelta, target: int = TARGET_POINTS) -> int:
    """The shortest offered step that gives at most ``target`` points over ``span``."""
    seconds = span.total_seconds()
    return next((s for s in STEPS if seconds / s <= target), STEPS[-1])


def align(start: datetime, end: datetime, step: int) -> tuple[datetime, datetime]:
    """[start, end) widened to whole steps."""
    s = int((start - _EPOCH).total_seconds() // step) * step
    e = -int(-(end - _EPOCH).total_seconds() // step) * step
    return _EPOCH + timedelta(seconds=s), _EPOCH + timedelta(seconds=e)


def source_for(layout: Layout, step: int) -> str:
    if layout is Layout.timescaledb:
        for width in sorted(AGGREGATES, reverse=True):
            if step % width == 0:
                return AGGREGATES[width]
    return "telemetry_samples"


def series(
    conn: Connection,
    layout: Layout,
    asset: str,
    metrics: Sequence[str],
    start: datetime,
    end: datetime,
    step: int,
) -> tuple[str, list[Series]]:
    """(where it came from, one series per metric with readings) over [start, end), aligned."""
    start, end = align(start, end, step)
    source = source_for(layout, step)
    if conn.dialect.name == "postgresql":
        rows = _postgres(conn, source, asset, metrics, start, end, step)
    else:
        rows = _sqlite(conn, asset, metrics, start, end, step)
    return source, _group(rows)


def _postgres(
    conn: Connection,
    source: str,
    asset: str,
    metrics: Sequence[str],
    start: datetime,
    end: datetime,
    step: int,
) -> list[tuple[datetime, str, float, int, float, float]]:
    if source == "telemetry_samples":
        t, total, n, low, high = "time", "sum(value)", "count(*)", "min(value)", "max(value)"
    else:
        t, total, n, low, high = "bucket", "sum(total)", "sum(n)::bigint", "min(low)", "max(high)"
    where = f"asset = :asset AND {t} >= :start AND {t} < :end"
    if metrics:
        where += " AND metric IN :metrics"
    q = text(
        f"SELECT date_bin(make_interval(secs => :step), {t}, TIMESTAMPTZ '1970-01-01 00:00:00+00')"
        f" AS b, metric, {total}, {n}, {low}, {high} FROM {source} WHERE {where} "
        "GROUP BY b, metric ORDER BY metric, b"
    )
    params: dict[str, object] = {"asset": asset, "start": start, "end": end, "step": step}
    if metrics:
        q = q.bindparams(bindparam("metrics", expanding=True))
        params["metrics"] = list(metrics)
    return [tuple(r) for r in conn.execute(q, params)]  # type: ignore[misc]


def _sqlite(
    conn: Connection,
    asset: str,
    metrics: Sequence[str],
    start: datetime,
    end: datetime,
    step: int,
) -> list[tuple[datetime, str, float, int, float, float]]:
    seconds = cast(func.strftime("%s", T.c.time), Integer)
    bucket = (seconds // step * step).label("b")
    q = (
        select(
            bucket,
            T.c.metric,
            func.sum(T.c.value),
            func.count(),
            func.min(T.c.value),
            func.max(T.c.value),
        )
        .where(T.c.asset == asset, T.c.time >= start, T.c.time < end)
        .group_by(bucket, T.c.metric)
        .order_by(T.c.metric, bucket)
    )
    if metrics:
        q = q.where(T.c.metric.in_(metrics))
    return [
        (_EPOCH + timedelta(seconds=int(b)), m, total, n, low, high)
        for b, m, total, n, low, high in conn.execute(q)
    ]


def _group(rows: Sequence[tuple[datetime, str, float, int, float, float]]) -> list[Series]:
    out: list[Series] = []
    for b, metric, total, n, low, high in rows:
        if not out or out[-1].metric != metric:
            out.append(Series(metric))
        out[-1].points.append(Point(b.astimezone(UTC), float(total) / int(n), low, high, int(n)))
    return out


def readings(
    conn: Connection,
    asset: str,
    metrics: Sequence[str],
    start: datetime,
    end: datetime,
    limit: int,
) -> list[Series]:
    """The readings themselves in [start, end), at most ``limit`` of them in all (oldest first);
    each is a point of count 1."""
    q = (
        select(T.c.time, T.c.metric, T.c.value)
        .where(T.c.asset == asset, T.c.time >= start, T.c.time < end)
        .order_by(T.c.metric, T.c.time)
        .limit(limit)
    )
    if metrics:
        q = q.where(T.c.metric.in_(metrics))
    out: list[Series] = []
    for t, metric, value in conn.execute(q):
        if not out or out[-1].metric != metric:
            out.append(Series(metric))
        out[-1].points.append(Point(t, value, value, value, 1))
    return out


def count(
    conn: Connection, asset: str, metrics: Sequence[str], start: datetime, end: datetime
) -> int:
    q = (
        select(func.count())
        .select_from(T)
        .where(T.c.asset == asset, T.c.time >= start, T.c.time < end)
    )
    if metrics:
        q = q.where(T.c.metric.in_(metrics))
    return int(conn.execute(q).scalar_one())
