"""Central's telemetry ingest: acked batches/s, batched against one message at a time.

A publisher plays one edge site: N telemetry batches of 50 samples (pre-serialised with
``TelemetryBatch.to_json``), published at QoS 1 as fast as the broker takes them while at most
``--window`` are unacked (the edge uplink's window). Central is the real ``EventConsumer`` in a
process of its own, on a database of its own per round; an edge-side client counts the acks. Two
paths, alternating in the same run so both see the same machine load:

* one-at-a-time: ``EventConsumer(max_burst=1)``, as central was before bursts: every message
  in a transaction of its own (the single-batch path of ``store_batch``), then its ack;
* batched: ``EventConsumer()``: the messages queued on the client (up to ``MAX_BURST``) in one
  transaction (``store_batches``), then their acks.

    .venv/bin/python bench/central_ingest.py [--batches N] [--rounds R] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from ticket_latency import database, forget_mqtt_state

from central.ingest.consumer import MAX_BURST, EventConsumer
from central.storage.db import make_engine, migrate, session_factory
from central.storage.models import TelemetryBatchRow, TelemetrySample
from fieldloop.brokers import client_kwargs, parse_broker_url
from fieldloop.messages import Ack, Sample, TelemetryBatch
from fieldloop.topics import Topics

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
SITE = "bench-site"
DEVICES = 500  # one site of 500 devices, one batch per device per flush
SAMPLES = 50
PATHS = {"one-at-a-time": 1, "batched": MAX_BURST}  # EventConsumer(max_burst=...)


class BenchFailed(Exception):
    pass


@dataclass
class Options:
    broker: str
    db: str | None
    batches: int
    rounds: int
    window: int
    timeout: float


def make_payloads(n: int) -> list[bytes]:
    t0 = datetime.now(UTC).replace(microsecond=0)
    payloads = []
    for i in range(n):
        device, flush = i % DEVICES, i // DEVICES
        start = t0 + timedelta(seconds=flush)
        samples = [
            Sample(metric=f"r{j:02d}", time=start, value=float(i + j)) for j in range(SAMPLES)
        ]
        batch = TelemetryBatch(
            site=SITE,
            device=f"dev-{device:03d}",
            asset=f"A-{device:03d}",
            event_time=start,
            seq=flush + 1,
            samples=samples,
        )
        payloads.append(batch.to_json())
    return payloads


# -- central, in a process of its own ----------------------------------------------------------


async def central(broker: str, db_url: str, root: str, client_id: str, max_burst: int) -> None:
    """Runs until SIGTERM, whose default action ends the process (an open transaction is rolled
    back by the database, as when central is killed)."""
    consumer = EventConsumer(
        parse_broker_url(broker),
        session_factory(make_engine(db_url)),
        Topics(root),
        client_id=client_id,
        max_burst=max_burst,
    )
    task = asyncio.create_task(consumer.run())
    await consumer.connected.wait()
    print("ready", flush=True)
    await task


# -- one round -----------------------------------------------------------------------------------


async def one_round(opts: Options, payloads: list[bytes], max_burst: int, tmp: Path) -> float:
    """Acked batches/s of one path, on a fresh database and topic root."""
    tag = uuid.uuid4().hex[:10]
    topics = Topics(f"bench-{tag}")
    central_id = f"bench-central-{tag}"
    kwargs = client_kwargs(parse_broker_url(opts.broker))
    with database(opts.db, tmp / tag, tag) as (db_url, _):
        engine = make_engine(db_url)
        migrate(engine)
        args = [opts.broker, db_url, topics.root, central_id, str(max_burst)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--role", "central", *args, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert proc.stdout is not None
            try:
                async with asyncio.timeout(30):
                    ready = await proc.stdout.readline()
            except TimeoutError:
                raise BenchFailed(f"central did not connect to {opts.broker} in 30 s") from None
            if ready.strip() != b"ready":
                raise BenchFailed("central did not start; see its output above")
            acked = await publish_and_count(opts, kwargs, topics, payloads, tag)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            await proc.wait()
            await forget_mqtt_state(kwargs, [central_id], topics.status(SITE))
        with session_factory(engine)() as s:
            stored = s.scalar(select(func.count()).select_from(TelemetryBatchRow))
            samples = s.scalar(select(func.count()).select_from(TelemetrySample))
        engine.dispose()
    n = len(payloads)
    if (stored, samples) != (n, n * SAMPLES):
        raise BenchFailed(
            f"stored {stored} batches / {samples} samples, expected {n} / {n * SAMPLES}"
        )
    # Skip the first 10 % (connections warming up, first transactions) and time the rest.
    warm = n // 10
    return (n - warm) / (acked[-1] - acked[warm])


async def publish_and_count(
    opts: Options, kwargs: dict[str, object], topics: Topics, payloads: list[bytes], tag: str
) -> list[float]:
    """Publish every payload keeping at most ``window`` unacked; return the ack times, sorted."""
    window = asyncio.Semaphore(opts.window)
    acked: dict[str, float] = {}
    done = asyncio.Event()

    async def count(client: aiomqtt.Client) -> None:
        async for m in client.messages:
            ack = Ack.model_validate_json(m.payload)  # type: ignore[arg-type]
            if ack.acked_id in acked or ack.result != "committed":
                raise BenchFailed(f"ack {ack.result} for {ack.acked_id}: seen twice or not stored")
            acked[ack.acked_id] = time.perf_counter()
            window.release()
            if len(acked) == len(payloads):
                done.set()

    async with (
        aiomqtt.Client(**kwargs, identifier=f"bench-acks-{tag}") as sub,  # type: ignore[arg-type]
        aiomqtt.Client(
            **kwargs,  # type: ignore[arg-type]
            identifier=f"bench-edge-{tag}",
            max_inflight_messages=opts.window,
        ) as pub,
        asyncio.TaskGroup() as tg,
    ):
        pub.pending_calls_threshold = opts.window + 1  # all in flight at once, on purpose
        await sub.subscribe(topics.ack(SITE), qos=1)
        counter = tg.create_task(count(sub))
        topic = topics.telemetry(SITE)
        try:
            async with asyncio.timeout(opts.timeout):
                for payload in payloads:
                    await window.acquire()
                    tg.create_task(pub.publish(topic, payload, qos=1))
                await done.wait()
        except TimeoutError:
            msg = f"{len(acked)} of {len(payloads)} acked after {opts.timeout:g} s"
            raise BenchFailed(msg) from None
        finally:
            counter.cancel()
    return sorted(acked.values())


# -- the run -------------------------------------------------------------------------------------


async def run(opts: Options) -> dict[str, list[float]]:
    payloads = make_payloads(opts.batches)
    rates: dict[str, list[float]] = {path: [] for path in PATHS}
    with tempfile.TemporaryDirectory(prefix="fieldloop-bench-") as tmpname:
        for r in range(opts.rounds):
            for path, max_burst in PATHS.items():
                rate = await one_round(opts, payloads, max_burst, Path(tmpname))
                rates[path].append(rate)
                print(f"round {r + 1}: {path:>13}: {rate:7.0f} acked batches/s", flush=True)
    return rates


def report(rates: dict[str, list[float]], opts: Options) -> None:
    db = "SQLite (a temporary file per round)"
    if opts.db:
        db = f"a database per round on {make_url(opts.db).render_as_string(hide_password=True)}"
    print(f"\n{opts.batches} batches x {SAMPLES} samples per round, window {opts.window}, {db}")
    print(f"{'path':>13}  {'median':>7}  rounds (acked batches/s)")
    for path, xs in rates.items():
        print(f"{path:>13}  {statistics.median(xs):7.0f}  {' '.join(f'{x:.0f}' for x in xs)}")
    ratio = statistics.median(rates["batched"]) / statistics.median(rates["one-at-a-time"])
    print(f"batched / one-at-a-time: {ratio:.1f}x")


def parse_args(argv: Sequence[str] | None) -> Options:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--broker", default=DEFAULT_BROKER, help=f"MQTT broker (default {DEFAULT_BROKER})"
    )
    p.add_argument(
        "--db",
        help="a SQLAlchemy URL; for postgresql+psycopg://.../db the bench creates and drops a "
        "database of its own per round on that server (default: temporary SQLite files)",
    )
    p.add_argument("--batches", type=int, default=3000, help="batches per round (default 3000)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of each path (default 2)")
    p.add_argument("--window", type=int, default=256, help="unacked batches (default 256)")
    p.add_argument("--timeout", type=float, default=120.0, help="per round (s, default 120)")
    a = p.parse_args(argv)
    if a.batches < 10 or a.rounds < 1:
        p.error("--batches must be at least 10 and --rounds at least 1")
    if not 1 <= a.window <= 1000:
        # Mosquitto queues at most 1000 QoS 1 messages per client (max_queued_messages) and drops
        # the rest: a deeper window would lose batches, not measure central.
        p.error("--window must be 1 to 1000")
    return Options(a.broker, a.db, a.batches, a.rounds, a.window, a.timeout)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["--role", "central"]:
        broker, db_url, root, client_id, max_burst = argv[2:]
        asyncio.run(central(broker, db_url, root, client_id, int(max_burst)))
        return 0
    opts = parse_args(argv)
    try:
        rates = asyncio.run(run(opts))
    except (BenchFailed, aiomqtt.MqttError, ExceptionGroup) as exc:
        # A failure inside a task group arrives wrapped; show the first real one.
        while isinstance(exc, ExceptionGroup):
            exc = exc.exceptions[0]
        where = "MQTT broker: " if isinstance(exc, aiomqtt.MqttError) else ""
        print(f"bench FAILED: {where}{exc}", file=sys.stderr)
        return 1
    report(rates, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
