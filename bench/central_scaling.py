"""Edge events/s with one and with three central processes on one PostgreSQL database, sharing
the edge traffic through MQTT 5 shared subscriptions, in the same run; and that every event is
stored exactly once either way.

Each run has a database of its own (created on the server of ``--pg``, migrated once, dropped
afterwards) and a topic root of its own. It starts K ``fieldloop central`` processes (K = 1, then
3, alternating over ``--rounds``) with the same FIELDLOOP_CONSUMER_GROUP, so each consumes
``$share/<group>/...`` and the broker hands every message to one of them. The edge side is
``--sites`` edge sites in this process, each as the agent publishes: an
``edge_agent.outbox.Outbox`` holding the site's events (written beforehand with
``append_many``, as the detectors' events are) and an ``edge_agent.uplink.Uplink`` publishing it
at QoS 1, at most ``--window`` unacked, deleting each event when central's ack comes back.

The events: on every site ``--devices`` chillers, each with ``--episodes`` episodes of one
rule, a ``fault_opened`` and then a ``fault_cleared`` (unique ids, per-device sequence numbers).
Central opens a ticket for each (site, asset, rule); a clear before dispatch resolves it, and the
next opening within the reopen window reopens it. The clock runs from starting the uplinks to
the last ack; events/s = events / that.

After every run the bench checks the database: every event stored once (edge_events: the count,
each device's sequence numbers 1..n with no gap), none left without its ticket, one ticket per
(site, asset, rule) with one occurrence per episode, and how many deliveries central found
already stored (edge_events.duplicates). A problem fails the bench after the report.

    .venv/bin/python bench/central_scaling.py [--sites N] [--devices N] [--episodes N]
                                              [--rounds R] [--pg URL] [--broker URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import psycopg
from edge_throughput import BenchFailed, Child, cpu_s
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from telemetry_store import DEFAULT_BROKER, DEFAULT_PG, start_central
from ticket_latency import database, forget_mqtt_state

from central.storage.db import make_engine, migrate
from central.storage.models import EdgeEvent, Ticket
from edge_agent.detectors import Detection
from edge_agent.outbox import Outbox
from edge_agent.uplink import Uplink
from fieldloop.brokers import client_kwargs, parse_broker_url
from fieldloop.messages import Ack, EventKind, Severity
from fieldloop.topics import Topics

CENTRALS = (1, 3)
RULE = "bench.chiller.discharge_temp.high"
METRIC, HOT, NORMAL, THRESHOLD = "discharge_temp", 100.0, 80.0, 95.0


@dataclass
class Options:
    broker: str
    pg: str
    sites: int
    devices: int
    episodes: int
    rounds: int
    window: int
    rules_engine: str
    timeout: float

    @property
    def events(self) -> int:
        return self.sites * self.devices * self.episodes * 2


@dataclass
class Run:
    centrals: int
    rate: float  # events/s
    seconds: float
    tickets: int
    duplicates: int  # deliveries central found already stored
    resent: int  # events the uplinks published again (no ack within 10 s)
    cpu: list[float]  # user+sys s of each central process over the run
    problems: list[str] = field(default_factory=list)


# -- the edge ----------------------------------------------------------------------------------


def site_ids(opts: Options, tag: str) -> list[str]:
    return [f"bench-{tag}-s{i}" for i in range(opts.sites)]


def fill_outbox(path: Path, site: str, opts: Options) -> Outbox:
    """The site's events, as its detectors would have stored them: per episode, every device's
    fault opening (one transaction), then every device's clear a minute later."""
    outbox = Outbox(path)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2 * opts.episodes)
    for e in range(opts.episodes):
        for kind, value, at in (
            (EventKind.fault_opened, HOT, t0 + timedelta(minutes=2 * e)),
            (EventKind.fault_cleared, NORMAL, t0 + timedelta(minutes=2 * e + 1)),
        ):
            detections = [
                Detection(
                    kind=kind,
                    rule_id=RULE,
                    title="Chiller discharge temperature high (bench)",
                    severity=Severity.major,
                    device=f"chiller-{d:03d}",
                    asset=f"CH-{d:03d}",
                    time=at,
                    metric=METRIC,
                    value=value,
                    threshold=THRESHOLD,
                )
                for d in range(opts.devices)
            ]
            outbox.append_many(site, detections, {METRIC: value}, location=f"{site} plant room")
    return outbox


async def publish(
    opts: Options, outboxes: dict[str, Outbox], topics: Topics, tag: str
) -> tuple[float, int]:
    """Run every site's uplink until all events are acked: (seconds from starting the uplinks
    to the last ack, events resent)."""
    acked: dict[str, float] = {}
    done = asyncio.Event()
    refused: list[Ack] = []

    def on_ack(ack: Ack) -> None:
        if ack.acked_id in acked:
            return
        if ack.result == "rejected":
            refused.append(ack)
        acked[ack.acked_id] = time.perf_counter()
        if len(acked) == opts.events:
            done.set()

    broker = parse_broker_url(opts.broker)
    uplinks = [
        Uplink(
            site,
            broker,
            outbox,
            topics,
            window=opts.window,
            on_ack=on_ack,
            client_id=f"bench-edge-{tag}-{i}",
        )
        for i, (site, outbox) in enumerate(outboxes.items())
    ]
    start = time.perf_counter()
    tasks = [asyncio.create_task(u.run(), name=f"uplink-{u.site}") for u in uplinks]
    try:
        async with asyncio.timeout(opts.timeout):
            await done.wait()
    except TimeoutError:
        raise BenchFailed(
            f"{len(acked)} of {opts.events} events acked after {opts.timeout:g} s"
        ) from None
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
    if refused:
        raise BenchFailed(f"central rejected {len(refused)} events, e.g. {refused[0].reason}")
    return max(acked.values()) - start, sum(u.resent for u in uplinks)


# -- one run -----------------------------------------------------------------------------------


async def one_run(opts: Options, k: int, tmp: Path) -> Run:
    tag = uuid.uuid4().hex[:10]
    topics = Topics(f"bench-{tag}")
    sites = site_ids(opts, tag)
    kwargs = client_kwargs(parse_broker_url(opts.broker))
    with database(opts.pg, tmp, tag) as (db_url, _):
        engine = make_engine(db_url)
        await asyncio.to_thread(migrate, engine)  # once, before the processes start
        engine.dispose()
        # (in this thread: an outbox's SQLite connection belongs to the thread that opened it)
        outboxes = {site: fill_outbox(tmp / f"outbox-{site}.sqlite", site, opts) for site in sites}
        centrals: list[Child] = []
        try:
            started = await asyncio.gather(
                *(
                    start_central(
                        f"central {i + 1}/{k}",
                        db_url,
                        opts.broker,
                        topics.root,
                        tmp / f"central-{tag}-{i}.log",
                        {
                            "FIELDLOOP_CONSUMER_CLIENT_ID": f"bench-central-{tag}-{i}",
                            "FIELDLOOP_CONSUMER_GROUP": f"bench-{tag}",
                            "FIELDLOOP_RULES_ENGINE": opts.rules_engine,
                        },
                    )
                    for i in range(k)
                ),
                return_exceptions=True,
            )
            centrals = [s for s in started if not isinstance(s, BaseException)]
            for s in started:
                if isinstance(s, BaseException):
                    raise s
            cpu0 = [cpu_s(c.ps) for c in centrals]
            seconds, resent = await publish(opts, outboxes, topics, tag)
            cpu = [cpu_s(c.ps) - c0 for c, c0 in zip(centrals, cpu0, strict=True)]
            for c in centrals:
                c.check()
        finally:
            for c in centrals:
                c.stop()
            for outbox in outboxes.values():
                outbox.close()
            for i, site in enumerate(sites):
                await forget_mqtt_state(kwargs, [f"bench-edge-{tag}-{i}"], topics.status(site))
        run = Run(k, opts.events / seconds, seconds, 0, 0, resent, cpu)
        await asyncio.to_thread(check, db_url, opts, run)
    return run


def check(db_url: str, opts: Options, run: Run) -> None:
    """Every event stored exactly once, every one on its ticket, one ticket per episode key."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            events, no_ticket, duplicates = conn.execute(
                select(
                    func.count(),
                    func.count().filter(EdgeEvent.ticket_id.is_(None)),
                    func.coalesce(func.sum(EdgeEvent.duplicates), 0),
                )
            ).one()
            per_device = conn.execute(
                select(
                    EdgeEvent.site,
                    EdgeEvent.device,
                    func.count(),
                    func.count(EdgeEvent.seq.distinct()),
                    func.min(EdgeEvent.seq),
                    func.max(EdgeEvent.seq),
                ).group_by(EdgeEvent.site, EdgeEvent.device)
            ).all()
            tickets = conn.execute(
                select(Ticket.site, Ticket.asset_id, Ticket.rule_id, Ticket.occurrences)
            ).all()
    finally:
        engine.dispose()
    p = run.problems
    run.tickets, run.duplicates = len(tickets), int(duplicates)
    if events != opts.events:
        p.append(f"{events} events stored, {opts.events} sent")
    n = 2 * opts.episodes
    gaps = [f"{s}/{d}" for s, d, c, u, lo, hi in per_device if (c, u, lo, hi) != (n, n, 1, n)]
    if len(per_device) != opts.sites * opts.devices or gaps:
        p.append(
            f"{len(per_device)} devices stored, {opts.sites * opts.devices} sent; sequence "
            f"numbers not 1..{n} exactly once on {len(gaps)}: {', '.join(gaps[:5])}"
        )
    if no_ticket:
        p.append(f"{no_ticket} events on no ticket")
    keys = {(s, a, r) for s, a, r, _ in tickets}
    if len(tickets) != len(keys):
        p.append(f"{len(tickets)} tickets for {len(keys)} (site, asset, rule): duplicates")
    if len(keys) != opts.sites * opts.devices:
        p.append(f"tickets for {len(keys)} assets, {opts.sites * opts.devices} had faults")
    wrong = [occ for *_, occ in tickets if occ != opts.episodes]
    if wrong:
        p.append(f"{len(wrong)} tickets with occurrences other than {opts.episodes}: {wrong[:5]}")


# -- the run -----------------------------------------------------------------------------------


async def run(opts: Options) -> list[Run]:
    main = asyncio.current_task()
    assert main is not None
    # a SIGTERM to the bench cleans up as Ctrl-C does (asyncio.run cancels on SIGINT)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    print_header(opts)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="fieldloop-bench-") as tmpname:
        for r in range(opts.rounds):
            order = CENTRALS if r % 2 == 0 else CENTRALS[::-1]
            for k in order:
                one = await one_run(opts, k, Path(tmpname))
                runs.append(one)
                cpu = " ".join(f"{c:.1f}" for c in one.cpu)
                print(
                    f"round {r + 1}: {k} central(s): {one.rate:7.1f} events/s "
                    f"({one.seconds:.1f} s; {one.tickets} tickets; CPU s per central: {cpu})"
                    + (f"; PROBLEMS: {'; '.join(one.problems)}" if one.problems else ""),
                    flush=True,
                )
    return runs


def print_header(opts: Options) -> None:
    pg = make_url(opts.pg).render_as_string(hide_password=True)
    print(
        f"""FieldLoop central scale-out bench
  broker:    {opts.broker} (MQTT 5 shared subscriptions, one consumer group per run)
  database:  {pg}: a database of its own per run
  events:    {opts.sites} sites x {opts.devices} devices x {opts.episodes} episodes x \
(opened, cleared) = {opts.events:,} a run, {opts.sites * opts.devices} tickets expected
  edge:      one outbox + uplink per site, window {opts.window}
  central:   `fieldloop central` x {" and ".join(map(str, CENTRALS))}, \
FIELDLOOP_RULES_ENGINE={opts.rules_engine}""",
        flush=True,
    )


def report(runs: list[Run]) -> bool:
    """Print the table; False if any run found a problem."""
    print(f"\n{'centrals':>8} {'median':>8}  runs (events/s)   tickets  found stored  resent")
    medians = {}
    for k in CENTRALS:
        mine = [r for r in runs if r.centrals == k]
        medians[k] = statistics.median(r.rate for r in mine)
        rates = " ".join(f"{r.rate:.1f}" for r in mine)
        tickets = "/".join(sorted({str(r.tickets) for r in mine}))
        dups = sum(r.duplicates for r in mine)
        resent = sum(r.resent for r in mine)
        print(f"{k:>8} {medians[k]:>8.1f}  {rates:<17} {tickets:>8} {dups:>13} {resent:>7}")
    lo, hi = CENTRALS
    print(f"scaling {hi} / {lo}: {medians[hi] / medians[lo]:.2f}x")
    if any(r.resent for r in runs):
        print(
            "note: the uplinks resent events central had not acked within 10 s; those runs did "
            "that work twice (found stored): a smaller --window keeps the queue shorter"
        )
    problems = [(r.centrals, p) for r in runs for p in r.problems]
    for k, p in problems:
        print(f"PROBLEM ({k} central(s)): {p}")
    if not problems:
        print("every event stored exactly once, on its one ticket, in every run")
    return not problems


def parse_args(argv: Sequence[str] | None) -> Options:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--broker", default=DEFAULT_BROKER, help=f"MQTT 5 broker (default {DEFAULT_BROKER})"
    )
    p.add_argument(
        "--pg",
        default=DEFAULT_PG,
        help=f"a PostgreSQL database to create the bench's own from (default {DEFAULT_PG})",
    )
    p.add_argument("--sites", type=int, default=4, help="edge sites, one uplink each (4)")
    p.add_argument("--devices", type=int, default=25, help="devices a site, a ticket each (25)")
    p.add_argument("--episodes", type=int, default=5, help="fault episodes a device (5)")
    p.add_argument("--rounds", type=int, default=2, help="runs of each (2)")
    p.add_argument("--window", type=int, default=16, help="unacked events a site (16)")
    p.add_argument(
        "--rules-engine",
        choices=("durable", "reference"),
        default="durable",
        help="central's FIELDLOOP_RULES_ENGINE (default durable, as deployed)",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="per run (s, default 300)")
    a = p.parse_args(argv)
    if min(a.sites, a.devices, a.episodes, a.rounds, a.window) < 1:
        p.error("--sites, --devices, --episodes, --rounds and --window must be at least 1")
    if a.sites * a.window > 1000:
        # Mosquitto queues at most 1000 QoS 1 messages per session (max_queued_messages) and
        # drops the rest: one central could be handed more than that at once.
        p.error("--sites x --window must be at most 1000")
    return Options(
        a.broker, a.pg, a.sites, a.devices, a.episodes, a.rounds, a.window, a.rules_engine,
        a.timeout,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        runs = asyncio.run(run(opts))
    except (BenchFailed, aiomqtt.MqttError, psycopg.Error) as exc:
        print(f"bench FAILED: {exc}", file=sys.stderr)
        return 1
    return 0 if report(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
