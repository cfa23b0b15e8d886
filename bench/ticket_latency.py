"""Ticket latency against the bare MQTT round trip, measured in one process run.

(a) ticket latency: from the simulated register crossing the threshold, plus the detection rule's
    ``for`` duration, to the ticket being visible over REST (GET /tickets?asset=...).
(b) MQTT round trip on the same broker: one client publishes at QoS 1, a second client subscribed
    to that topic replies at QoS 1 on another topic, the first receives the reply. Measured twice:
    A with one connection per client, B with a publishing and a receiving connection per client
    (A pays Nagle/delayed-ACK stalls of ~40 ms on brokers and clients without TCP_NODELAY; B, like
    the sparse ticket path, does not).

The whole stack runs in this process as ``fieldloop demo`` wires it (simulator, edge agent,
central, and optionally the embedded broker). The figure to read is the ratio of the two: absolute
times on a shared machine are noisy, but both are measured under the same load at the same time
(RTT samples are interleaved with the ticket episodes).

    .venv/bin/python bench/ticket_latency.py [--episodes N] [--broker mqtt://127.0.0.1:1883]
                                             [--embedded] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiomqtt
import httpx

REPO = Path(__file__).resolve().parent.parent
PROFILES_DIR = REPO / "device_profiles"
DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
METRIC = "discharge_temp"
ABOVE, CLEAR_BELOW = 95.0, 90.0
HOT, NORMAL = 100.0, 80.0


class BenchFailed(Exception):
    pass


@dataclass
class Options:
    episodes: int
    rtt_samples: int
    broker: str | None
    embedded: bool
    db: str | None
    for_s: float
    poll_interval: float
    http_poll: float
    warmup: int
    rtt_warmup: int
    timeout: float


@dataclass
class Results:
    ticket: list[float] = field(default_factory=list)  # seen - (crossing + for)
    sampling: list[float] = field(default_factory=list)  # opening reading - (crossing + for)
    pipeline: list[float] = field(default_factory=list)  # seen - opening reading
    rtt: list[float] = field(default_factory=list)  # one connection per client (as briefed)
    rtt_split: list[float] = field(default_factory=list)  # publish/receive connections split


# -- helpers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(xs: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def write_site(path: Path, site_id: str, asset: str, port: int, poll_interval: float) -> None:
    path.write_text(
        f"""apiVersion: fieldloop/v1
kind: Site
site: {site_id}
name: Ticket latency bench
profiles_dir: {PROFILES_DIR}
devices:
  - id: chiller-1
    asset: {asset}
    profile: chiller
    modbus_tcp:
      host: 127.0.0.1
      port: {port}
      unit_id: 1
      timeout: 1.0
      retries: 1
    poll_interval: {poll_interval}
""",
        encoding="utf-8",
    )


def write_rules(path: Path, for_s: float) -> None:
    path.write_text(
        f"""apiVersion: fieldloop/v1
kind: DetectionRules
rules:
  - id: bench.chiller.discharge_temp.high
    title: Chiller discharge temperature high (bench)
    profile: chiller
    metric: {METRIC}
    above: {ABOVE}
    for: {for_s}s
    clear_below: {CLEAR_BELOW}
    severity: major
""",
        encoding="utf-8",
    )


async def wait_until(
    what: str, check: Callable[[], bool], within: float, every: float = 0.01
) -> None:
    deadline = time.perf_counter() + within
    while not check():
        if time.perf_counter() > deadline:
            raise BenchFailed(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(every)


async def cancel(task: asyncio.Task[object]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def ok(r: httpx.Response, what: str) -> dict:
    if r.status_code != 200:
        raise BenchFailed(f"{what}: HTTP {r.status_code} {r.text}")
    return r.json()


# -- database ----------------------------------------------------------------------------------


@contextlib.contextmanager
def database(url: str | None, tmp: Path, tag: str) -> Iterator[tuple[str, str]]:
    """Yield (SQLAlchemy URL, printable description). PostgreSQL gets a database of its own
    inside the given server, dropped afterwards."""
    from sqlalchemy.engine import make_url

    from central.storage.db import normalize_url

    if url is None:
        yield f"sqlite:///{tmp / 'central.db'}", f"SQLite {tmp / 'central.db'} (temporary)"
        return
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "postgresql":
        yield url, parsed.render_as_string(hide_password=True)
        return
    import psycopg

    admin = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"bench_{tag}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        own = parsed.set(database=name)
        shown = f"PostgreSQL {own.render_as_string(hide_password=True)} (created for this run)"
        yield own.render_as_string(hide_password=False), shown
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- MQTT round trip ---------------------------------------------------------------------------


class RoundTrip:
    """Requester and responder, plain aiomqtt clients at QoS 1, kept connected all run.

    ``split=False`` is the round trip as usually written: each side publishes and receives on one
    connection. ``split=True`` gives each side one connection to publish and another to receive,
    so no connection ever sends two packets back to back (a PUBACK, then a PUBLISH): that pair is
    what lets Nagle's algorithm wait out the peer's delayed ACK (~40 ms on Linux) on a broker or
    client that does not set TCP_NODELAY (Mosquitto by default, paho)."""

    def __init__(self, kwargs: dict[str, object], root: str, tag: str, *, split: bool) -> None:
        self.kwargs = kwargs
        self.split = split
        kind = "split" if split else "one"
        self.req_topic = f"{root}/rtt-{kind}/request"
        self.rep_topic = f"{root}/rtt-{kind}/reply"
        self.name = f"bench-rtt-{kind}-{tag}"
        self.replies: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self._stack = contextlib.AsyncExitStack()
        self._req_pub: aiomqtt.Client | None = None
        self._seq = 0

    async def _client(self, role: str) -> aiomqtt.Client:
        client = aiomqtt.Client(**self.kwargs, identifier=f"{self.name}-{role}")  # type: ignore[arg-type]
        return await self._stack.enter_async_context(client)

    async def start(self) -> None:
        rsp_sub = await self._client("rsp")
        rsp_pub = await self._client("rsp-pub") if self.split else rsp_sub
        req_sub = await self._client("req")
        req_pub = await self._client("req-pub") if self.split else req_sub
        await rsp_sub.subscribe(self.req_topic, qos=1)
        await req_sub.subscribe(self.rep_topic, qos=1)
        self._req_pub = req_pub
        for coro in (self._respond(rsp_sub, rsp_pub), self._read(req_sub)):
            task = asyncio.create_task(coro, name=self.name)
            self._stack.push_async_callback(cancel, task)

    async def stop(self) -> None:
        await self._stack.aclose()

    async def _respond(self, sub: aiomqtt.Client, pub: aiomqtt.Client) -> None:
        async for m in sub.messages:
            await pub.publish(self.rep_topic, m.payload, qos=1)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for m in client.messages:
            self.replies.put_nowait((bytes(m.payload), time.perf_counter()))  # type: ignore[arg-type]

    async def sample(self, within: float) -> float:
        assert self._req_pub is not None
        self._seq += 1
        payload = f"{self.name}:{self._seq}".encode()
        t0 = time.perf_counter()
        await self._req_pub.publish(self.req_topic, payload, qos=1)
        async with asyncio.timeout(within):
            while True:
                got, t1 = await self.replies.get()
                if got == payload:
                    return t1 - t0


# -- ticket episodes ---------------------------------------------------------------------------


class Episodes:
    def __init__(
        self, http: httpx.AsyncClient, overrides: dict[str, float], asset: str, opts: Options
    ) -> None:
        self.http = http
        self.overrides = overrides  # the simulated device's pinned values
        self.asset = asset
        self.opts = opts
        self.last_id = 0

    async def prime(self) -> None:
        page = ok(await self.http.get("/tickets", params={"asset": self.asset, "limit": 1}), "list")
        self.last_id = page["items"][0]["id"] if page["items"] else 0

    async def run_one(self) -> tuple[float, float, float]:
        """One episode; returns (ticket latency, sampling part, pipeline part) in seconds."""
        o = self.opts
        overrides = self.overrides
        overrides[METRIC] = HOT
        crossing = time.perf_counter()
        crossing_wall = time.time()
        expected = crossing + o.for_s
        # Nothing can be seen before crossing + for; don't load central with polls until then.
        await asyncio.sleep(max(0.0, o.for_s - 0.02))
        deadline = crossing + o.timeout
        ticket = None
        while ticket is None:
            page = ok(
                await self.http.get("/tickets", params={"asset": self.asset, "limit": 1}), "list"
            )
            seen = time.perf_counter()
            items = page["items"]
            if items and items[0]["id"] > self.last_id:
                ticket = items[0]
                break
            if seen > deadline:
                raise BenchFailed(f"no ticket within {o.timeout:g} s of the crossing")
            await asyncio.sleep(o.http_poll)
        tid = ticket["id"]
        self.last_id = tid
        # The opening reading's edge time (wall clock) mapped onto perf_counter.
        opened_wall = datetime.fromisoformat(ticket["fault_opened_at"]).timestamp()
        opened = crossing + (opened_wall - crossing_wall)

        # Reset for the next episode. The clear must reach central while the ticket is still
        # open: central applies a clear only to the asset's *open* ticket, so closing first would
        # leave this ticket fault_active forever and the wait below would never end.
        overrides[METRIC] = NORMAL
        ok(await self.http.post(f"/tickets/{tid}/accept", json={"actor": "bench"}), "accept")
        until = time.perf_counter() + o.timeout
        while ok(await self.http.get(f"/tickets/{tid}"), "read")["fault_active"]:
            if time.perf_counter() > until:
                raise BenchFailed(f"ticket #{tid}: fault clear not processed in {o.timeout:g} s")
            await asyncio.sleep(0.02)
        ok(
            await self.http.post(
                f"/tickets/{tid}/complete", json={"actor": "bench", "report": "bench"}
            ),
            "complete",
        )
        ok(await self.http.post(f"/tickets/{tid}/close", json={"actor": "bench"}), "close")
        return seen - expected, opened - expected, seen - opened


# -- the run -------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def broker_url(opts: Options) -> AsyncIterator[tuple[str, str]]:
    if not opts.embedded:
        url = opts.broker or DEFAULT_BROKER
        yield url, f"{url} (external)"
        return
    from fieldloop.embedded_broker import EmbeddedBroker

    broker = EmbeddedBroker("127.0.0.1", free_port())
    await broker.start()
    try:
        yield broker.url, f"{broker.url} (embedded amqtt, in this process)"
    finally:
        await broker.stop()


async def forget_mqtt_state(kwargs: dict[str, object], client_ids: list[str], topic: str) -> None:
    """Drop the persistent sessions (clean_session=False) of the edge and central clients and the
    edge's retained status, so runs leave nothing behind on a shared broker."""
    for cid in client_ids:
        with contextlib.suppress(aiomqtt.MqttError):
            async with aiomqtt.Client(**kwargs, identifier=cid, clean_session=True):  # type: ignore[arg-type]
                pass
    with contextlib.suppress(aiomqtt.MqttError):
        async with aiomqtt.Client(**kwargs) as c:  # type: ignore[arg-type]
            await c.publish(topic, b"", qos=1, retain=True)


async def run(opts: Options) -> Results:
    from central.server import CentralServer
    from central.settings import Settings
    from edge_agent.agent import EdgeAgent
    from fieldloop.brokers import client_kwargs, parse_broker_url
    from fieldloop.detection import load_detection
    from fieldloop.profiles import load_site
    from fieldloop.topics import Topics
    from simulators.modbus_server import ModbusSimulator, SimulatedDevice
    from simulators.scenarios import chiller_normal

    tag = uuid.uuid4().hex[:10]
    root = f"bench-{tag}"
    site_id = f"bench-{tag}"
    asset = f"CH-{tag}"
    consumer_id = f"fieldloop-central-bench-{tag}"
    results = Results()

    with tempfile.TemporaryDirectory(prefix="fieldloop-bench-") as tmpname:
        tmp = Path(tmpname)
        sim_port, http_port = free_port(), free_port()
        write_site(tmp / "site.yaml", site_id, asset, sim_port, opts.poll_interval)
        write_rules(tmp / "rules.yaml", opts.for_s)
        site = load_site(tmp / "site.yaml")
        rules = load_detection(tmp / "rules.yaml")
        dev_spec = site.spec.devices[0]

        with database(opts.db, tmp, tag) as (db_url, db_desc):
            async with contextlib.AsyncExitStack() as stack:
                url, broker_desc = await stack.enter_async_context(broker_url(opts))
                address = parse_broker_url(url)
                kwargs = client_kwargs(address)
                topics = Topics(root=root)
                # Registered first, so it runs last: after the agent and central have gone.
                stack.push_async_callback(
                    forget_mqtt_state,
                    kwargs,
                    [consumer_id, f"fieldloop-edge-{site_id}"],
                    topics.status(site_id),
                )

                device = SimulatedDevice(
                    profile=site.profile_of(dev_spec),
                    scenario=chiller_normal(dev_spec.id),
                    unit_id=1,
                )
                device.overrides[METRIC] = NORMAL
                sim = ModbusSimulator([device], "127.0.0.1", sim_port)
                await sim.start()
                stack.push_async_callback(sim.stop)

                settings = Settings(
                    db_url=db_url,
                    broker_url=url,
                    host="127.0.0.1",
                    port=http_port,
                    topic_root=root,
                    consumer_client_id=consumer_id,
                )
                central = CentralServer(settings)
                await central.start()
                stack.push_async_callback(central.stop)

                agent = EdgeAgent(site, rules, address, tmp / "edge", topics=topics)
                agent_task = asyncio.create_task(agent.run(), name="edge-agent")
                stack.push_async_callback(cancel, agent_task)

                rtt = RoundTrip(kwargs, root, tag, split=False)
                rtt_split = RoundTrip(kwargs, root, tag, split=True)
                for r in (rtt, rtt_split):
                    stack.push_async_callback(r.stop)
                    await r.start()

                await wait_until(
                    "central's MQTT consumer", central.app.state.consumer.connected.is_set, 15
                )
                await wait_until("the edge uplink", agent.uplink.connected.is_set, 15)
                await wait_until(
                    "the first Modbus reading",
                    lambda: METRIC in agent.latest.get(dev_spec.id, {}),
                    15,
                )

                print_header(opts, broker_desc, db_desc, root)
                http = await stack.enter_async_context(
                    httpx.AsyncClient(base_url=central.url, timeout=10)
                )
                eps = Episodes(http, device.overrides, asset, opts)
                await eps.prime()

                for _ in range(opts.rtt_warmup):
                    await rtt.sample(opts.timeout)
                    await rtt_split.sample(opts.timeout)
                for i in range(opts.warmup):
                    lat, _, _ = await eps.run_one()
                    print(f"  warm-up episode {i + 1}: {lat * 1000:.1f} ms (not counted)")

                # Interleave: after each episode, a share of the RTT samples, so both see the
                # same conditions over the same minutes.
                per = opts.rtt_samples // opts.episodes
                extra = opts.rtt_samples - per * opts.episodes
                for i in range(opts.episodes):
                    lat, samp, pipe = await eps.run_one()
                    results.ticket.append(lat)
                    results.sampling.append(samp)
                    results.pipeline.append(pipe)
                    for _ in range(per + (1 if i < extra else 0)):
                        results.rtt.append(await rtt.sample(opts.timeout))
                        results.rtt_split.append(await rtt_split.sample(opts.timeout))
                    if (i + 1) % 10 == 0 or i + 1 == opts.episodes:
                        print(
                            f"  {i + 1}/{opts.episodes} episodes, last {lat * 1000:.1f} ms",
                            flush=True,
                        )
    return results


def print_header(opts: Options, broker: str, db: str, root: str) -> None:
    print(
        f"""FieldLoop ticket latency bench
  broker:          {broker}
  database:        {db}
  topic root:      {root}
  rule:            {METRIC} above {ABOVE:g} for {opts.for_s:g} s (clear below {CLEAR_BELOW:g})
  Modbus poll:     every {opts.poll_interval * 1000:g} ms
  REST poll:       GET /tickets?asset=... every {opts.http_poll * 1000:g} ms
  episodes:        {opts.episodes} (+{opts.warmup} warm-up), RTT samples: {opts.rtt_samples} \
(+{opts.rtt_warmup} warm-up)""",
        flush=True,
    )


def report(r: Results, opts: Options) -> None:
    def stats(xs: list[float]) -> tuple[float, float]:
        return percentile(xs, 50), percentile(xs, 99)

    def row(name: str, xs: list[float]) -> str:
        p50, p99 = stats(xs)
        return (
            f"{name:<44} {len(xs):>4} {p50 * 1000:9.2f} {p99 * 1000:9.2f} "
            f"{statistics.fmean(xs) * 1000:9.2f} {max(xs) * 1000:9.2f}"
        )

    head = f"{'':<44} {'n':>4} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9} {'max ms':>9}"
    print()
    print(head)
    print("-" * len(head))
    print(row("ticket: crossing+for -> visible over REST", r.ticket))
    print(row("  of which Modbus sampling", r.sampling))
    print(row("  of which pipeline", r.pipeline))
    print(row("MQTT QoS 1 RTT A: one connection per client", r.rtt))
    print(row("MQTT QoS 1 RTT B: pub/sub connections split", r.rtt_split))

    a50, a99 = stats(r.rtt)
    b50, b99 = stats(r.rtt_split)
    t50, t99 = stats(r.ticket)
    p50, p99 = stats(r.pipeline)
    head2 = f"{'ratio':<44} {'p50':>9} {'p99':>9}"
    print()
    print(head2)
    print("-" * len(head2))
    for name, (x50, x99), (y50, y99) in (
        ("ticket / RTT A", (t50, t99), (a50, a99)),
        ("ticket / RTT B", (t50, t99), (b50, b99)),
        ("pipeline / RTT A", (p50, p99), (a50, a99)),
        ("pipeline / RTT B", (p50, p99), (b50, b99)),
    ):
        print(f"{name:<44} {x50 / y50:9.1f} {x99 / y99:9.1f}")

    pi = opts.poll_interval * 1000
    k = round(opts.for_s / opts.poll_interval)
    print(
        f"""
Notes:
  * The edge polls Modbus every {pi:g} ms. The crossing is read up to one poll after it happens,
    and the `for` window is found complete only at a poll (poll {k} or, with timer jitter,
    poll {k + 1} after the first hot reading), so up to ~{2 * pi:g} ms of each ticket
    latency is sampling granularity ("of which Modbus sampling": the opening reading's edge
    time - (crossing + for)), not pipeline.
  * "of which pipeline": opening reading -> ticket seen over REST (Modbus read, detection,
    outbox, MQTT QoS 1 publish, ingest + commit, REST poll). The REST poll every
    {opts.http_poll * 1000:g} ms adds up to that much plus one request.
  * RTT A: requester and responder each publish and receive on one connection.
    RTT B: the same exchange with a separate publishing and receiving connection per side."""
    )
    if a50 > 10 * b50 and a50 > 0.030:
        a_ms = f"{a50 * 1000:.0f} ms"
        print(
            f"""  * RTT A (p50 {a_ms}) is mostly TCP stalls, not the broker: a connection
    that sends a PUBACK and then a PUBLISH back to back holds the PUBLISH (Nagle) until the
    peer's delayed ACK (~40 ms) when TCP_NODELAY is off (paho clients; Mosquitto unless
    `set_tcp_nodelay true`). RTT B avoids that pattern, as the sparse ticket path does."""
        )
    print(
        f"""  * p99 of {len(r.ticket)} episodes is close to the maximum. Absolute times are noisy on
    a shared machine: read the ratios."""
    )


def parse_args(argv: Sequence[str] | None) -> Options:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--episodes", type=int, default=50, help="ticket episodes (default 50)")
    p.add_argument("--rtt-samples", type=int, default=200, help="MQTT round trips (default 200)")
    p.add_argument("--broker", help=f"MQTT broker URL (default {DEFAULT_BROKER})")
    p.add_argument("--embedded", action="store_true", help="use the embedded amqtt broker")
    p.add_argument(
        "--db",
        help="central's database: a SQLAlchemy URL; for postgresql+psycopg://.../db the bench "
        "creates and drops a database of its own on that server (default: temporary SQLite)",
    )
    p.add_argument("--for", dest="for_s", type=float, default=0.5, help="rule `for` (s)")
    p.add_argument("--poll-interval", type=float, default=0.05, help="Modbus poll interval (s)")
    p.add_argument("--http-poll", type=float, default=0.005, help="REST poll interval (s)")
    p.add_argument("--warmup", type=int, default=1, help="uncounted warm-up episodes")
    p.add_argument("--rtt-warmup", type=int, default=20, help="uncounted warm-up round trips")
    p.add_argument("--timeout", type=float, default=30.0, help="per-step timeout (s)")
    p.add_argument("-v", "--verbose", action="store_true", help="log the stack at INFO")
    a = p.parse_args(argv)
    if a.embedded and a.broker:
        p.error("--embedded and --broker exclude each other")
    if a.episodes < 1 or a.rtt_samples < 1:
        p.error("--episodes and --rtt-samples must be at least 1")
    logging.basicConfig(
        level=logging.INFO if a.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return Options(
        episodes=a.episodes,
        rtt_samples=a.rtt_samples,
        broker=a.broker,
        embedded=a.embedded,
        db=a.db,
        for_s=a.for_s,
        poll_interval=a.poll_interval,
        http_poll=a.http_poll,
        warmup=a.warmup,
        rtt_warmup=a.rtt_warmup,
        timeout=a.timeout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        results = asyncio.run(run(opts))
    except BenchFailed as exc:
        print(f"bench FAILED: {exc}", file=sys.stderr)
        return 1
    except aiomqtt.MqttError as exc:
        print(f"bench FAILED: MQTT broker: {exc}", file=sys.stderr)
        return 1
    report(results, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
