"""Telemetry points/s end to end (edge -> broker -> central -> store) against a raw psycopg COPY
into the same table, on PostgreSQL, in the same run.

* ours: the edge's real publishing path in this process (``edge_agent.outbox.Outbox`` written a
  flush at a time with ``append_telemetry``, as the agent's flush loop does, and
  ``edge_agent.uplink.Uplink`` publishing it at QoS 1 and deleting what central acks), the
  broker, and the real ``fieldloop central`` process screening and storing the batches. The
  clock starts at the first outbox write and stops when the last batch's ack is back; then the
  rows in ``telemetry_samples`` are counted (every sample stored, once).
* raw: the same samples written by psycopg 3 into the same table of a database migrated the
  same way, ``COPY telemetry_samples (time, site, device, asset, metric, value, quality) FROM
  STDIN`` with ``write_row``: binary, as central's store writes (``--raw-text``: text), one COPY
  and one transaction per edge batch (``--raw-one-copy``: one for the round). The daily
  partitions are created beforehand with ``central.telemetry.partitions.ensure_partitions``
  where the table has them. The clock runs from the first COPY to the last commit.

The workload: one site of ``--devices`` devices, each with one of the shipped device profiles
(in turn) and every metric of it, polled once a second; ``--flushes`` flushes of one batch per
device of about ``--samples`` readings. Every round uses a database of its own (created and
dropped on the server of ``--pg``); the two paths alternate, each going first in every other
round, so both see the same machine load. With ``--timescale`` (or FIELDLOOP_BENCH_TIMESCALE_URL)
the same comparison also runs there. Target: ours >= 0.25 of raw.

    .venv/bin/python bench/telemetry_store.py [--devices N] [--flushes N] [--samples N]
                                              [--rounds R] [--raw-text] [--raw-one-copy]
                                              [--pg URL] [--timescale URL] [--broker URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiomqtt
import psutil
import psycopg
from edge_throughput import BenchFailed, Child, cpu_s, python_argv, wait_http
from sqlalchemy.engine import make_url
from ticket_latency import database, forget_mqtt_state, free_port

from central.storage.db import make_engine, migrate, normalize_url
from central.telemetry.layout import Layout, detect
from central.telemetry.partitions import ensure_partitions
from edge_agent.outbox import Outbox
from edge_agent.readings import Reading
from edge_agent.uplink import Uplink
from fieldloop.brokers import client_kwargs, parse_broker_url
from fieldloop.messages import MAX_SAMPLES, Ack
from fieldloop.profiles import load_profile
from fieldloop.topics import Topics

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TIMESCALE_ENV = "FIELDLOOP_BENCH_TIMESCALE_URL"
SITE = "bench-site"
TARGET = 0.25  # ours / raw
COPY_SQL = "COPY telemetry_samples (time, site, device, asset, metric, value, quality) FROM STDIN"
#: the column types for binary COPY (as central's store sets them)
COPY_TYPES = ["timestamptz", "varchar", "varchar", "varchar", "varchar", "float8", "varchar"]
PROFILES_DIR = Path(__file__).resolve().parent.parent / "device_profiles"
PATHS = ("ours", "raw")


@dataclass
class Options:
    broker: str
    targets: list[tuple[str, str]]  # (name, SQLAlchemy URL of a database to create ours from)
    devices: int
    flushes: int
    samples: int
    raw_text: bool  # raw COPY in text format (default binary, as central's store writes)
    raw_one: bool  # raw as one COPY in one transaction (default one per edge batch)
    rounds: int
    window: int
    timeout: float


Flush = list[tuple[str, str, list[Reading]]]  # (device, asset, readings): one batch per device


@dataclass(frozen=True)
class Workload:
    """Every flush of one edge site: one batch per device of all its profile's metrics, polled
    once a second, about ``samples`` readings a batch; the last poll about now."""

    flushes: list[Flush]
    profiles: dict[str, str]  # device -> profile name (sent with its batches)
    first: datetime
    last: datetime

    @property
    def batches(self) -> int:
        return sum(len(f) for f in self.flushes)

    @property
    def points(self) -> int:
        return sum(len(readings) for f in self.flushes for _, _, readings in f)

    @property
    def days(self) -> set[date]:
        """The UTC days the readings fall on (one partition each)."""
        first, last = self.first.astimezone(UTC).date(), self.last.astimezone(UTC).date()
        return {first + timedelta(days=i) for i in range((last - first).days + 1)}


def make_workload(opts: Options) -> Workload:
    """Device i has the i-th of the shipped device profiles (round robin) and reports every
    metric of it; ``samples // metrics`` polls a batch (800 samples: 160 polls of a chiller's
    5 metrics, 114 of an air compressor's 7)."""
    profiles = sorted(
        (load_profile(path) for path in PROFILES_DIR.glob("*.yaml")), key=lambda p: p.name
    )
    devices = [
        (f"dev-{d:03d}", f"A-{d:03d}", profiles[d % len(profiles)]) for d in range(opts.devices)
    ]
    polls = {dev: max(1, opts.samples // len(prof.resources)) for dev, _, prof in devices}
    span = opts.flushes * max(polls.values())
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=span)
    flushes: list[Flush] = []
    for f in range(opts.flushes):
        flush: Flush = []
        for d, (device, asset, profile) in enumerate(devices):
            readings = []
            for p in range(polls[device]):
                at = t0 + timedelta(seconds=f * polls[device] + p)  # one time object per poll
                for m, res in enumerate(profile.resources):
                    value = round(20.0 + ((d * 7 + m * 13 + p) % 400) / 10, 1)
                    readings.append(Reading(device, asset, res.name, at, value))
            flush.append((device, asset, readings))
        flushes.append(flush)
    last = max(r.time for f in flushes for _, _, rs in f for r in rs)
    return Workload(flushes, {dev: prof.name for dev, _, prof in devices}, t0, last)


# -- the table -------------------------------------------------------------------------------


def psycopg_url(db_url: str) -> str:
    return make_url(normalize_url(db_url)).set(drivername="postgresql").render_as_string(False)


def check_stored(db_url: str, work: Workload, path: str) -> None:
    """Exactly the workload's points in telemetry_samples (and none quarantined)."""
    with psycopg.connect(psycopg_url(db_url)) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM telemetry_samples), "
            "(SELECT count(*) FROM telemetry_quarantine)"
        ).fetchone()
    assert row is not None
    stored, quarantined = row
    if (stored, quarantined) != (work.points, 0):
        raise BenchFailed(
            f"{path}: {stored} rows in telemetry_samples and {quarantined} in "
            f"telemetry_quarantine, expected {work.points} and 0"
        )


def prepare(db_url: str, work: Workload, *, partitions: bool) -> str:
    """Migrate; with ``partitions``, create the daily partitions the workload needs where the
    table has them (central's store creates them on demand; a raw COPY cannot). The layout."""
    engine = make_engine(db_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            layout = detect(conn)
            if partitions and layout is Layout.partitioned:
                ensure_partitions(conn, work.days)
    finally:
        engine.dispose()
    return layout.value


# -- ours: edge outbox + uplink -> Mosquitto -> fieldloop central -> store ---------------------


def logged(log: Path, text: bytes) -> bool:
    return text in log.read_bytes()


async def start_central(
    name: str,
    db_url: str,
    broker: str,
    root: str,
    log: Path,
    env: dict[str, str],
) -> Child:
    """``fieldloop central`` as a process of its own, returned once /healthz answers and its
    consumer has subscribed (its log says "central consuming")."""
    port = free_port()
    child = Child(
        name,
        python_argv(
            "-m", "fieldloop", "central", "--db", db_url, "--broker", broker,
            "--port", str(port), "--topic-root", root,
        ),
        log,
        os.sched_getaffinity(0),
        env=env,
    )  # fmt: skip
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz", child, 60)
        deadline = time.monotonic() + 30
        while not logged(log, b"central consuming"):
            child.check()
            if time.monotonic() > deadline:
                raise BenchFailed(f"{name}: its MQTT consumer did not subscribe in 30 s")
            await asyncio.sleep(0.05)
    except BaseException:
        child.stop()
        raise
    return child


@dataclass(frozen=True)
class Round:
    rate: float  # points/s
    layout: str  # of telemetry_samples: partitioned, timescaledb, plain
    note: str = ""


async def run_ours(opts: Options, work: Workload, db_url: str, tmp: Path, tag: str) -> Round:
    root = f"bench-{tag}"
    topics = Topics(root)
    central_id, edge_id = f"bench-central-{tag}", f"bench-edge-{tag}"
    kwargs = client_kwargs(parse_broker_url(opts.broker))
    layout = await asyncio.to_thread(prepare, db_url, work, partitions=False)
    env = {"FIELDLOOP_CONSUMER_CLIENT_ID": central_id, "FIELDLOOP_RULES_ENGINE": "reference"}
    central = await start_central(
        "central", db_url, opts.broker, root, tmp / f"central-{tag}.log", env
    )
    edge = psutil.Process()
    cpu0 = cpu_s(central.ps), cpu_s(edge)
    try:
        elapsed, resent = await publish(opts, work, topics, tmp / f"outbox-{tag}.sqlite", edge_id)
        cpu = cpu_s(central.ps) - cpu0[0], cpu_s(edge) - cpu0[1]
        central.check()
    finally:
        central.stop()
        await forget_mqtt_state(kwargs, [central_id, edge_id], topics.status(SITE))
    await asyncio.to_thread(check_stored, db_url, work, "ours")
    note = f"{elapsed:.1f} s; CPU s: central {cpu[0]:.1f}, edge {cpu[1]:.1f}"
    if resent:
        note += f"; {resent} batches resent (no ack within 10 s)"
    return Round(work.points / elapsed, layout, note)


async def publish(
    opts: Options, work: Workload, topics: Topics, outbox_path: Path, client_id: str
) -> tuple[float, int]:
    """Write every flush to a fresh outbox while its uplink publishes; (seconds from the first
    write to the last batch's ack, batches the uplink resent)."""
    outbox = Outbox(outbox_path)
    acked: set[str] = set()
    done = asyncio.Event()
    bad: list[Ack] = []

    def on_ack(ack: Ack) -> None:
        if ack.result != "committed" and ack.acked_id not in acked:
            bad.append(ack)
        acked.add(ack.acked_id)
        if len(acked) == work.batches:
            done.set()

    uplink = Uplink(
        SITE,
        parse_broker_url(opts.broker),
        outbox,
        topics,
        window=opts.window,
        on_ack=on_ack,
        client_id=client_id,
    )
    task = asyncio.create_task(uplink.run(), name="edge-uplink")
    try:
        async with asyncio.timeout(15):
            await uplink.connected.wait()
        start = time.perf_counter()
        for flush in work.flushes:
            outbox.append_telemetry(SITE, flush, work.profiles)
            uplink.notify()
            await asyncio.sleep(0)  # let the uplink publish between flushes, as in the agent
        try:
            async with asyncio.timeout(opts.timeout):
                await done.wait()
        except TimeoutError:
            raise BenchFailed(
                f"ours: {len(acked)} of {work.batches} batches acked after {opts.timeout:g} s"
            ) from None
        elapsed = time.perf_counter() - start
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        outbox.close()
    if bad:
        raise BenchFailed(f"ours: {len(bad)} batches acked {bad[0].result}, e.g. {bad[0]}")
    return elapsed, uplink.resent


# -- raw: psycopg COPY -----------------------------------------------------------------------


def run_raw(opts: Options, work: Workload, db_url: str) -> Round:
    layout = prepare(db_url, work, partitions=True)
    batches = [
        [(r.time, SITE, r.device, r.asset, r.metric, r.value, r.quality) for r in readings]
        for flush in work.flushes
        for _, _, readings in flush
    ]
    if opts.raw_one:
        batches = [[row for rows in batches for row in rows]]
    sql = COPY_SQL if opts.raw_text else f"{COPY_SQL} (FORMAT BINARY)"
    with psycopg.connect(psycopg_url(db_url)) as conn:
        start = time.perf_counter()
        for rows in batches:
            with conn.transaction(), conn.cursor() as cur, cur.copy(sql) as copy:
                if not opts.raw_text:
                    copy.set_types(COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
        elapsed = time.perf_counter() - start
    check_stored(db_url, work, "raw")
    return Round(work.points / elapsed, layout, f"{elapsed:.1f} s")


# -- the run -----------------------------------------------------------------------------------


Rates = dict[str, dict[str, list[float]]]  # target -> path -> points/s per round


async def run(opts: Options) -> Rates:
    main = asyncio.current_task()
    assert main is not None
    # a SIGTERM to the bench cleans up as Ctrl-C does (asyncio.run cancels on SIGINT)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    work = make_workload(opts)
    print_header(opts, work)
    rates: Rates = {name: {p: [] for p in PATHS} for name, _ in opts.targets}
    with tempfile.TemporaryDirectory(prefix="fieldloop-bench-") as tmpname:
        tmp = Path(tmpname)
        for name, url in opts.targets:
            for r in range(opts.rounds):
                order = PATHS if r % 2 == 0 else PATHS[::-1]
                for path in order:
                    tag = uuid.uuid4().hex[:10]
                    with database(url, tmp, tag) as (db_url, _):
                        if path == "ours":
                            one = await run_ours(opts, work, db_url, tmp, tag)
                        else:
                            one = await asyncio.to_thread(run_raw, opts, work, db_url)
                    rates[name][path].append(one.rate)
                    print(
                        f"round {r + 1}: {name} ({one.layout}): {path:>4} {one.rate:>9,.0f} "
                        f"points/s ({one.note})",
                        flush=True,
                    )
    return rates


def print_header(opts: Options, work: Workload) -> None:
    targets = ", ".join(
        f"{name} {make_url(url).render_as_string(hide_password=True)}" for name, url in opts.targets
    )
    per = work.points // work.batches
    grouping = (
        "one COPY in one transaction for the round"
        if opts.raw_one
        else "one COPY and one transaction per edge batch"
    )
    print(
        f"""FieldLoop telemetry store bench
  broker:     {opts.broker}
  databases:  {targets} (a database of its own per round)
  workload:   {opts.devices} devices x {opts.flushes} flushes = {work.batches} batches of ~{per} \
samples = {work.points:,} points a round
              (the {len(set(work.profiles.values()))} shipped device profiles in turn, every \
metric of each, a poll a second)
  ours:       edge outbox + uplink (window {opts.window}) -> broker -> `fieldloop central`
  raw:        psycopg COPY ({"text" if opts.raw_text else "binary"}), {grouping}""",
        flush=True,
    )


def report(rates: Rates) -> None:
    print(f"\n{'database':<12} {'path':>4} {'median':>9}  rounds (points/s)")
    for name, paths in rates.items():
        for path, xs in paths.items():
            cells = " ".join(f"{x:,.0f}" for x in xs)
            print(f"{name:<12} {path:>4} {statistics.median(xs):>9,.0f}  {cells}")
    for name, paths in rates.items():
        ratio = statistics.median(paths["ours"]) / statistics.median(paths["raw"])
        each = " ".join(f"{o / r:.2f}" for o, r in zip(paths["ours"], paths["raw"], strict=True))
        verdict = "met" if ratio >= TARGET else "MISSED"
        print(
            f"{name}: ours / raw = {ratio:.2f} (medians; per round {each}); "
            f"target >= {TARGET:g}: {verdict}"
        )


def parse_args(argv: Sequence[str] | None) -> Options:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--broker", default=DEFAULT_BROKER, help=f"MQTT broker (default {DEFAULT_BROKER})"
    )
    p.add_argument(
        "--pg",
        default=DEFAULT_PG,
        help="a PostgreSQL database to create the bench's own from, one per round "
        f"(default {DEFAULT_PG})",
    )
    p.add_argument(
        "--timescale",
        default=os.environ.get(TIMESCALE_ENV) or None,
        help="also run on this TimescaleDB server, the same way (env: "
        f"{TIMESCALE_ENV}; default: not run)",
    )
    p.add_argument("--devices", type=int, default=20, help="devices, one batch each a flush (20)")
    p.add_argument("--flushes", type=int, default=30, help="flushes a round (30)")
    p.add_argument("--samples", type=int, default=800, help="samples a batch, about (800)")
    p.add_argument(
        "--raw-text",
        action="store_true",
        help="raw COPY in text format (default: binary, the format central's store writes)",
    )
    p.add_argument(
        "--raw-one-copy",
        action="store_true",
        help="raw as one COPY in one transaction (default: one per edge batch)",
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds of each path (3)")
    p.add_argument("--window", type=int, default=256, help="the uplink's unacked batches (256)")
    p.add_argument("--timeout", type=float, default=300.0, help="per round (s, default 300)")
    a = p.parse_args(argv)
    if min(a.devices, a.flushes, a.rounds) < 1 or not 10 <= a.samples <= MAX_SAMPLES:
        p.error(f"--devices, --flushes, --rounds >= 1; --samples 10 to {MAX_SAMPLES:,}")
    if not 1 <= a.window <= 1000:
        # Mosquitto queues at most 1000 QoS 1 messages per client (max_queued_messages) and drops
        # the rest: a deeper window would lose batches, not measure central.
        p.error("--window must be 1 to 1000")
    targets = [("PostgreSQL", a.pg)]
    if a.timescale:
        targets.append(("TimescaleDB", a.timescale))
    return Options(
        a.broker,
        targets,
        a.devices,
        a.flushes,
        a.samples,
        a.raw_text,
        a.raw_one_copy,
        a.rounds,
        a.window,
        a.timeout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        rates = asyncio.run(run(opts))
    except (BenchFailed, aiomqtt.MqttError, psycopg.Error) as exc:
        print(f"bench FAILED: {exc}", file=sys.stderr)
        return 1
    report(rates)
    return 0


if __name__ == "__main__":
    sys.exit(main())
