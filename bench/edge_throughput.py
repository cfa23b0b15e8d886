"""Edge agent throughput: CPU per decoded point and keeping up, against bare pymodbus, in one run.

(a) 20 devices x 20 holding registers every 100 ms (4,000 points/s): the agent's CPU time per
    point (user+sys of its process over a steady window / points decoded in it), against the
    target (<= 20 us) and the ThingsBoard IoT Gateway reference from the issue (~100 us).
(b) 500 devices x 50 registers every second (25,000 points/s) on one core: achieved vs offered
    points/s, poll lateness (p50/p99/max), RSS, and CPU per point.
(c) for both: the bare pymodbus AsyncModbusTcpClient doing the same reads (one client per device,
    same schedule, struct decoding only) in a process of its own, measured the same way, so
    ours / bare is printed.

Every component is a real process: the simulators (10 unit ids per port, constant signals),
central (`fieldloop central`, so telemetry is acked and the outbox stays small), the edge agent
(`fieldloop edge`) and the bare client. The measured process (agent, then bare client) is pinned
to one CPU; the simulators, central and this script to the others. See bench/README.md.

    .venv/bin/python bench/edge_throughput.py [--scenario a|b|all] [--seconds N] [--warmup S]
                                              [--central real|acker] [--broker URL] [--cpu N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
#: how often the agent writes status.json (EdgeAgent's status_interval default); the bare client
#: writes its counters on the same period, and windows start and end at these writes
STATUS_EVERY = 5.0
UNITS_PER_PORT = 10  # devices behind one simulated port, as behind a serial gateway
TARGET_US = 20.0
TB_US, TB_CORE = 100.0, 0.38  # ThingsBoard IoT Gateway on load (a), from the issue


class BenchFailed(Exception):
    pass


@dataclass(frozen=True)
class Scenario:
    key: str
    devices: int
    registers: int
    interval: float  # s
    sim_procs: int  # simulator processes serving the devices

    @property
    def offered(self) -> float:
        return self.devices * self.registers / self.interval

    @property
    def ports(self) -> int:
        return -(-self.devices // UNITS_PER_PORT)

    def title(self) -> str:
        every = f"{self.interval * 1000:g} ms" if self.interval < 1 else f"{self.interval:g} s"
        return (
            f"({self.key}) {self.devices} devices x {self.registers} holding registers every "
            f"{every} = {self.offered:,.0f} points/s offered"
        )


SCENARIOS = {
    "a": Scenario("a", devices=20, registers=20, interval=0.1, sim_procs=1),
    "b": Scenario("b", devices=500, registers=50, interval=1.0, sim_procs=2),
}


@dataclass
class Options:
    scenarios: list[str]
    seconds: float
    warmup: float
    broker: str
    central: str  # "real" (fieldloop central) or "acker" (this file's stand-in)
    cpu: int
    helpers: set[int]


@dataclass
class Window:
    """One process over one steady window, between two of its status writes."""

    name: str
    wall: float  # s, between the two samples taken by this script
    status_span: float  # s, between the two writes (the writer's own timestamps)
    start_epoch: float  # the window's status writes, as epoch seconds
    end_epoch: float
    cpu: float  # user+sys s of the measured process
    core_others: float  # share of its CPU that other processes used in the window
    core_steal: float  # share of its CPU the hypervisor took
    polls: int
    errors: int
    points: int
    rss_end: int
    rss_peak: int
    outbox: tuple[int, int] = (0, 0)  # messages at the window's start and end (agent)
    helpers_cpu: dict[str, float] = field(default_factory=dict)  # name -> cpu s in the window
    lateness: list[float] = field(default_factory=list)  # s, estimated from poll start times
    lateness_exact: list[float] = field(default_factory=list)  # s, bare client's own scheduler
    skipped: int = 0  # schedule ticks without a poll (a poll overran its interval)
    polls_seen: int = 0  # successful polls in the window whose start time is known
    poll_rate: float = 0.0  # successful polls/s, from their start times
    registers: int = 0
    final: dict[str, Any] = field(default_factory=dict)  # last status document after exit
    stop_note: str = ""  # set if the process had to be killed

    @property
    def points_per_s(self) -> float:
        """Achieved, from the polls' start times (see fill_timing)."""
        return self.poll_rate * self.registers

    @property
    def core_share(self) -> float:
        return self.cpu / self.wall

    @property
    def cpu_per_point_us(self) -> float:
        pps = self.points_per_s
        return self.core_share / pps * 1e6 if pps else math.nan

    @property
    def counted_per_s(self) -> float:
        """Points/s from the status counters: exact count, but a window edge that falls on a
        round of polls moves up to one poll per device in or out of it."""
        return self.points / self.status_span


@dataclass
class Outcome:
    scenario: Scenario
    agent: Window
    bare: Window


# -- helpers ---------------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    """n distinct free ports (all held open until every one is picked)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def percentile(xs: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(xs)
    if not s:
        return math.nan
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


@dataclass
class Timing:
    lateness: list[float]  # s, of each poll in the window
    skipped: int  # schedule ticks in the window without a poll
    polls: int  # in the window
    rate: float  # polls/s


def timing(starts: Sequence[float], interval: float, lo: float, hi: float) -> Timing:
    """One device's polls in the window [lo, hi) from their start times (epoch s).

    Lateness: both pollers schedule on a fixed grid (t0 + k * interval, skipping the ticks a
    slow poll missed), but t0 is not visible from outside. Start times modulo the interval are
    lateness plus an unknown constant; it is taken where the polls of the whole run are earliest
    (after the largest circular gap): the device's least late poll counts as on time. So this is
    a lower bound, exact when one poll started on time (checked against the bare client's own
    clock in the output).

    Rate: (polls - 1) / (last - first) is exact for a periodic poller (a count of polls in the
    window is not: all devices poll in phase, and a window edge on a round of polls moves one
    poll per device in or out); a device that stopped or started inside the window is counted
    as polls / window."""
    ts = sorted(starts)
    if not ts:
        return Timing([], 0, 0, 0.0)
    ref = ts[0]
    res = sorted((t - ref) % interval for t in ts)
    gaps = [(b - a, i + 1) for i, (a, b) in enumerate(itertools.pairwise(res))]
    gaps.append((res[0] + interval - res[-1], 0))
    anchor = res[max(gaps)[1]]
    inside = [t for t in ts if lo <= t < hi]
    late = [((t - ref) % interval - anchor) % interval for t in inside]
    skipped = sum(max(0, round((b - a) / interval) - 1) for a, b in itertools.pairwise(inside))
    n = len(inside)
    edge = 2 * interval
    if n >= 2 and inside[0] - lo < edge and hi - inside[-1] < edge:
        rate = (n - 1) / (inside[-1] - inside[0])
    else:
        rate = n / (hi - lo)
    return Timing(late, skipped, n, rate)


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# -- files -------------------------------------------------------------------------------------


def profile_name(sc: Scenario) -> str:
    return f"bench_regs{sc.registers}"


def write_profile(directory: Path, sc: Scenario) -> None:
    lines = [
        "apiVersion: fieldloop/v1",
        "kind: DeviceProfile",
        f"name: {profile_name(sc)}",
        f"description: {sc.registers} contiguous uint16 holding registers (throughput bench)",
        "resources:",
    ]
    for i in range(sc.registers):
        lines += [
            f"  - name: r{i:02d}",
            "    table: holding_registers",
            f"    address: {i}",
            "    type: uint16",
        ]
    (directory / f"{profile_name(sc)}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def device_ids(sc: Scenario) -> list[tuple[str, int, int]]:
    """(device id, port index, unit id) of every device."""
    return [(f"dev{i:03d}", i // UNITS_PER_PORT, i % UNITS_PER_PORT + 1) for i in range(sc.devices)]


def write_site(path: Path, sc: Scenario, site_id: str, ports: list[int], profiles: Path) -> None:
    lines = [
        "apiVersion: fieldloop/v1",
        "kind: Site",
        f"site: {site_id}",
        f"name: Edge throughput bench ({sc.key})",
        f"profiles_dir: {profiles}",
        "devices:",
    ]
    for dev, port_i, unit in device_ids(sc):
        lines += [
            f"  - id: {dev}",
            f"    asset: A-{dev}",
            f"    profile: {profile_name(sc)}",
            f"    modbus_tcp: {{host: 127.0.0.1, port: {ports[port_i]}, unit_id: {unit}, "
            "timeout: 1.0, retries: 1}",
            f"    poll_interval: {sc.interval * 1000:g}ms",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_rules(path: Path, sc: Scenario) -> None:
    # r00 is served as a constant 100: the detector runs on every reading and never fires
    path.write_text(
        f"""apiVersion: fieldloop/v1
kind: DetectionRules
rules:
  - id: bench.r00.high
    title: Throughput bench register r00 high
    profile: {profile_name(sc)}
    metric: r00
    above: 60000
    for: 5s
    clear_below: 50000
    severity: minor
""",
        encoding="utf-8",
    )


def write_bare_spec(path: Path, sc: Scenario, ports: list[int]) -> None:
    spec = {
        "registers": sc.registers,
        "address": 0,
        "interval": sc.interval,
        "timeout": 1.0,
        "retries": 1,
        "devices": [
            {"id": dev, "host": "127.0.0.1", "port": ports[p], "unit": unit}
            for dev, p, unit in device_ids(sc)
        ],
    }
    path.write_text(json.dumps(spec), encoding="utf-8")


# -- child processes -------------------------------------------------------------------------

PR_SET_PDEATHSIG = 1


def _libc() -> Any:
    if sys.platform != "linux":
        return None
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


class Child:
    """A process of this bench: own session (a Ctrl-C reaches only this script, which stops it),
    pinned to ``cpus``, killed by the kernel if this script dies without cleaning up."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log: Path,
        cpus: set[int],
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log = log
        self.stop_note = ""
        libc = _libc()

        def pin() -> None:
            if libc is not None:
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            os.sched_setaffinity(0, cpus)

        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
                preexec_fn=pin,
            )
        self.ps = psutil.Process(self.proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise BenchFailed(
                f"{self.name} exited with code {self.proc.returncode}:\n{self.tail()}"
            )

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join("    " + ln for ln in text.splitlines()[-lines:])

    def stop(self, within: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``within`` s. Returns the exit code, None if it had to be
        killed (``stop_note`` then says so)."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(within)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.stop_note = f"ignored SIGTERM for {within:g} s; killed (SIGKILL)"
                print(f"  ! {self.name} {self.stop_note}", flush=True)
                return None
        return self.proc.returncode


def cpu_s(ps: Any) -> float:
    t = ps.cpu_times()
    return t.user + t.system


def python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]


async def wait_ports(ports: Sequence[int], children: Sequence[Child], within: float) -> None:
    deadline = time.monotonic() + within
    for port in ports:
        while True:
            try:
                _r, w = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                for c in children:
                    c.check()
                if time.monotonic() > deadline:
                    raise BenchFailed(
                        f"simulator port {port} not listening after {within:g} s"
                    ) from None
                await asyncio.sleep(0.05)
                continue
            w.close()
            await w.wait_closed()
            break


def mosquitto_process() -> Any:
    """The broker's process if it runs on this machine (only read, for its CPU share)."""
    for p in psutil.process_iter(["name"]):
        if p.info["name"] == "mosquitto":
            return p
    return None


# -- the steady window -----------------------------------------------------------------------


@dataclass
class Sample:
    """Taken right after a status write."""

    t: float  # perf_counter
    cpu: float  # user+sys s of the measured process
    helpers: dict[str, float]  # user+sys s of the other processes
    core_busy: float  # s the measured process's CPU was busy (any process), from boot
    core_steal: float  # s stolen from that CPU by the hypervisor
    doc: dict[str, Any]  # the status document


class StatusWatch:
    """Detects each new write of a status file (written atomically: a new inode each time) and
    samples the process's CPU right away, before reading the file."""

    def __init__(self, path: Path, child: Child, helpers: dict[str, Any], cpu: int) -> None:
        self.path = path
        self.child = child
        self.cpu = cpu
        self.helpers = helpers
        self._key: tuple[int, int] | None = None
        self.rss_peak = 0

    def rearm(self) -> None:
        self._key = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    async def next_write(self, within: float) -> Sample:
        deadline = time.monotonic() + within
        last_rss = 0.0
        while True:
            key = self._stat()
            if key is not None and key != self._key:
                cpu = cpu_s(self.child.ps)
                core = psutil.cpu_times(percpu=True)[self.cpu]
                helpers = {}
                for name, ps in self.helpers.items():
                    with contextlib.suppress(Exception):
                        helpers[name] = cpu_s(ps)
                t = time.perf_counter()
                self._key = key
                try:
                    doc = json.loads(self.path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue  # replaced again while reading: take the next one
                self.rss_peak = max(self.rss_peak, self.child.ps.memory_info().rss)
                busy = core.user + core.nice + core.system + core.irq + core.softirq
                return Sample(t, cpu, helpers, busy, core.steal, doc)
            self.child.check()
            now = time.monotonic()
            if now > deadline:
                raise BenchFailed(f"{self.child.name}: no new {self.path.name} in {within:g} s")
            if now - last_rss >= 0.5:
                self.rss_peak = max(self.rss_peak, self.child.ps.memory_info().rss)
                last_rss = now
            await asyncio.sleep(0.005)

    async def until(self, ready: Callable[[dict], bool], within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while True:
            sample = await self.next_write(max(1.0, deadline - time.monotonic()) + 6)
            if ready(sample.doc):
                return
            if time.monotonic() > deadline:
                raise BenchFailed(f"{self.child.name}: {what} not reached in {within:g} s")


def all_polled(doc: dict) -> bool:
    devices = doc.get("devices", {})
    return bool(devices) and all(d["polls"] - d["errors"] > 0 for d in devices.values())


async def steady_window(
    name: str,
    watch: StatusWatch,
    sc: Scenario,
    opts: Options,
    ready: Callable[[dict], bool],
) -> Window:
    await watch.until(ready, 90, "every device answering")
    await asyncio.sleep(opts.warmup)
    watch.rearm()  # the window starts at the next write, not one made during the warm-up
    writes = max(1, math.ceil(opts.seconds / STATUS_EVERY))
    s0 = await watch.next_write(STATUS_EVERY * 3)
    watch.rss_peak = watch.child.ps.memory_info().rss
    for _ in range(writes):
        s1 = await watch.next_write(STATUS_EVERY * 3)
    rss_end = watch.child.ps.memory_info().rss
    d0, d1, wall = s0.doc, s1.doc, s1.t - s0.t
    cpu = s1.cpu - s0.cpu

    def total(doc: dict, key: str) -> int:
        return sum(d.get(key, 0) for d in doc["devices"].values())

    polls = total(d1, "polls") - total(d0, "polls")
    errors = total(d1, "errors") - total(d0, "errors")
    return Window(
        name=name,
        wall=wall,
        status_span=epoch(d1["time"]) - epoch(d0["time"]),
        start_epoch=epoch(d0["time"]),
        end_epoch=epoch(d1["time"]),
        cpu=cpu,
        core_others=max(0.0, s1.core_busy - s0.core_busy - cpu) / wall,
        core_steal=(s1.core_steal - s0.core_steal) / wall,
        polls=polls,
        errors=errors,
        points=(polls - errors) * sc.registers,
        rss_end=rss_end,
        rss_peak=max(watch.rss_peak, rss_end),
        outbox=(d0.get("outbox_messages", 0), d1.get("outbox_messages", 0)),
        helpers_cpu={k: s1.helpers[k] - s0.helpers[k] for k in s0.helpers.keys() & s1.helpers},
        registers=sc.registers,
    )


def fill_timing(w: Window, starts: dict[str, list[float]], interval: float) -> None:
    """Lateness, skipped ticks and the achieved rate from every successful poll's start time
    (of the whole run: the lateness anchor uses them all)."""
    for times in starts.values():
        t = timing(times, interval, w.start_epoch, w.end_epoch)
        w.lateness.extend(t.lateness)
        w.skipped += t.skipped
        w.polls_seen += t.polls
        w.poll_rate += t.rate


# -- the edge agent ----------------------------------------------------------------------------


class TelemetryTap:
    """Subscribes (QoS 0, clean session) to the site's telemetry and keeps each device's distinct
    sample times: with the default report policy every reading is sent, and all readings of one
    poll carry the poll's start time, so these are the agent's poll start times."""

    def __init__(self, kwargs: dict[str, object], topic: str, tag: str) -> None:
        self.kwargs = kwargs
        self.topic = topic
        self.ident = f"bench-throughput-tap-{tag}"
        self.times: dict[str, set[str]] = {}
        self.ready = asyncio.Event()
        self.batches = 0

    async def run(self) -> None:
        import aiomqtt

        async with aiomqtt.Client(**self.kwargs, identifier=self.ident) as client:  # type: ignore[arg-type]
            await client.subscribe(self.topic, qos=0)
            self.ready.set()
            async for m in client.messages:
                self.add([m.payload])  # type: ignore[list-item]

    def add(self, payloads: list[bytes]) -> None:
        for payload in payloads:
            doc = json.loads(payload)
            self.batches += 1
            self.times.setdefault(doc["device"], set()).update(s["time"] for s in doc["samples"])

    def starts(self) -> dict[str, list[float]]:
        return {dev: [epoch(t) for t in ts] for dev, ts in self.times.items()}


async def forget_mqtt_state(kwargs: dict[str, object], client_ids: list[str], topic: str) -> None:
    """Drop the persistent sessions (clean_session=False) of the edge and central clients and the
    edge's retained status, so runs leave nothing behind on a shared broker."""
    import aiomqtt

    for cid in client_ids:
        with contextlib.suppress(aiomqtt.MqttError):
            async with aiomqtt.Client(**kwargs, identifier=cid, clean_session=True):  # type: ignore[arg-type]
                pass
    with contextlib.suppress(aiomqtt.MqttError):
        async with aiomqtt.Client(**kwargs) as c:  # type: ignore[arg-type]
            await c.publish(topic, b"", qos=1, retain=True)


def exists(path: Path) -> bool:
    return path.exists()


async def wait_file(path: Path, child: Child, within: float) -> None:
    deadline = time.monotonic() + within
    while not exists(path):
        child.check()
        if time.monotonic() > deadline:
            raise BenchFailed(f"{child.name}: not ready after {within:g} s")
        await asyncio.sleep(0.05)


async def wait_http(url: str, child: Child, within: float) -> None:
    import httpx

    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            child.check()
            if time.monotonic() > deadline:
                raise BenchFailed(f"{child.name}: {url} not answering after {within:g} s")
            await asyncio.sleep(0.1)


async def measure_agent(
    sc: Scenario,
    opts: Options,
    tmp: Path,
    site_path: Path,
    rules_path: Path,
    site_id: str,
    tag: str,
    sims: list[Child],
    helpers_ps: dict[str, Any],
) -> Window:
    from fieldloop.brokers import client_kwargs, parse_broker_url
    from fieldloop.topics import Topics

    root = f"bench-{tag}"
    topics = Topics(root=root)
    kwargs = client_kwargs(parse_broker_url(opts.broker))
    consumer_id = f"fieldloop-central-bench-{tag}"
    data_dir = tmp / "edge"
    http_port = free_ports(1)[0]

    async with contextlib.AsyncExitStack() as stack:
        # registered first, so it runs last: after the agent and central have gone
        stack.push_async_callback(
            forget_mqtt_state, kwargs, [consumer_id, f"fieldloop-edge-{site_id}"],
            topics.status(site_id),
        )  # fmt: skip
        if opts.central == "real":
            central = Child(
                "central",
                python_argv(
                    "-m", "fieldloop", "central",
                    "--db", f"sqlite:///{tmp / 'central.db'}",
                    "--broker", opts.broker,
                    "--port", str(http_port),
                    "--topic-root", root,
                ),
                tmp / "central.log",
                opts.helpers,
                env={"FIELDLOOP_CONSUMER_CLIENT_ID": consumer_id},
            )  # fmt: skip
        else:
            central = Child(
                "acker",
                python_argv(
                    __file__, "--role", "acker", "--broker", opts.broker, "--topic-root", root,
                    "--site-id", site_id, "--out", str(tmp / "acker.ready"),
                ),
                tmp / "acker.log",
                opts.helpers,
            )  # fmt: skip
        stack.callback(central.stop)
        tap = TelemetryTap(kwargs, topics.telemetry(site_id), tag)
        tap_task = asyncio.create_task(tap.run(), name="telemetry-tap")
        stack.push_async_callback(cancel, tap_task)
        if opts.central == "real":
            await wait_http(f"http://127.0.0.1:{http_port}/healthz", central, 60)
        else:
            await wait_file(tmp / "acker.ready", central, 30)
        async with asyncio.timeout(15):
            await tap.ready.wait()

        agent = Child(
            "edge agent",
            python_argv(
                "-m", "fieldloop", "edge",
                "--site", str(site_path),
                "--rules", str(rules_path),
                "--broker", opts.broker,
                "--data-dir", str(data_dir),
                "--topic-root", root,
            ),
            tmp / "edge.log",
            {opts.cpu},
        )  # fmt: skip
        stack.callback(agent.stop)
        watched = {central.name: central.ps, **helpers_ps}
        for i, s in enumerate(sims):
            watched[f"simulator {i + 1}"] = s.ps
        watch = StatusWatch(data_dir / "status.json", agent, watched, opts.cpu)

        def ready(doc: dict) -> bool:
            return bool(doc.get("uplink_connected")) and all_polled(doc)

        w = await steady_window("FieldLoop edge agent", watch, sc, opts, ready)
        await asyncio.sleep(3.0)  # the window's last telemetry flush (every 1 s) to arrive
        # On Python 3.11 the agent can ignore SIGTERM for good (see the README): a second one
        # would not help (a TaskGroup aborts its children once), so it is killed after 15 s.
        code = agent.stop(within=15)
        w.stop_note = agent.stop_note
        if code not in (0, None):
            raise BenchFailed(f"the edge agent exited with code {code}:\n{agent.tail()}")
        w.final = json.loads((data_dir / "status.json").read_text(encoding="utf-8"))
        # every batch was either published (the tap has it) or is still in the outbox
        tap.add(outbox_telemetry(data_dir / f"outbox-{site_id}.sqlite"))
        fill_timing(w, tap.starts(), sc.interval)
    return w


def outbox_telemetry(path: Path) -> list[bytes]:
    """The telemetry payloads left in a stopped agent's outbox (opened read-only)."""
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT payload FROM outbox WHERE stream = 'telemetry'")]
    finally:
        db.close()


async def cancel(task: asyncio.Task[object]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


# -- the bare client -------------------------------------------------------------------------


async def measure_bare(
    sc: Scenario, opts: Options, tmp: Path, spec: Path, sims: list[Child], helpers_ps: dict
) -> Window:
    out = tmp / "bare"
    out.mkdir()
    bare = Child(
        "bare pymodbus client",
        python_argv(__file__, "--role", "bare", "--spec", str(spec), "--out", str(out)),
        tmp / "bare.log",
        {opts.cpu},
    )
    try:
        watched = dict(helpers_ps)
        for i, s in enumerate(sims):
            watched[f"simulator {i + 1}"] = s.ps
        watch = StatusWatch(out / "status.json", bare, watched, opts.cpu)
        w = await steady_window("bare pymodbus", watch, sc, opts, all_polled)
    finally:
        code = bare.stop(within=10)
    if code != 0:
        raise BenchFailed(f"the bare client exited with code {code}:\n{bare.tail()}")
    polls = json.loads((out / "result.json").read_text(encoding="utf-8"))
    fill_timing(
        w,
        {dev: [t for t, _, ok in p if ok] for dev, p in polls.items()},
        sc.interval,
    )
    for p in polls.values():
        w.lateness_exact.extend(late for t, late, _ in p if w.start_epoch <= t < w.end_epoch)
    return w


# -- one scenario ----------------------------------------------------------------------------


async def run_scenario(sc: Scenario, opts: Options, tag: str) -> Outcome:
    site_id = f"bench-tp-{tag}"
    with tempfile.TemporaryDirectory(prefix=f"fieldloop-throughput-{sc.key}-") as tmpname:
        tmp = Path(tmpname)
        ports = free_ports(sc.ports)
        (tmp / "profiles").mkdir()
        write_profile(tmp / "profiles", sc)
        write_site(tmp / "site.yaml", sc, site_id, ports, tmp / "profiles")
        write_rules(tmp / "rules.yaml", sc)
        write_bare_spec(tmp / "bare.json", sc, ports)

        with contextlib.ExitStack() as procs:
            sims = []
            for i in range(sc.sim_procs):
                sim = Child(
                    f"simulator {i + 1}",
                    python_argv(
                        __file__, "--role", "simulator", "--site", str(tmp / "site.yaml"),
                        "--part", f"{i}/{sc.sim_procs}",
                    ),
                    tmp / f"simulator-{i + 1}.log",
                    opts.helpers,
                )  # fmt: skip
                procs.callback(sim.stop, 5)
                sims.append(sim)
            await wait_ports(ports, sims, 60)
            helpers_ps: dict[str, Any] = {"this bench": psutil.Process()}
            if (mq := mosquitto_process()) is not None:
                helpers_ps["mosquitto"] = mq

            print(f"  {sc.key}: edge agent ...", flush=True)
            agent = await measure_agent(
                sc, opts, tmp, tmp / "site.yaml", tmp / "rules.yaml", site_id, tag, sims,
                helpers_ps,
            )  # fmt: skip
            print(
                f"  {sc.key}: edge agent {agent.cpu_per_point_us:.1f} us/point; bare pymodbus ...",
                flush=True,
            )
            bare = await measure_bare(sc, opts, tmp, tmp / "bare.json", sims, helpers_ps)
            print(f"  {sc.key}: bare pymodbus {bare.cpu_per_point_us:.1f} us/point", flush=True)
    return Outcome(sc, agent, bare)


async def check_broker(url: str) -> None:
    import aiomqtt

    from fieldloop.brokers import client_kwargs, parse_broker_url

    try:
        async with aiomqtt.Client(**client_kwargs(parse_broker_url(url))):  # type: ignore[arg-type]
            pass
    except aiomqtt.MqttError as exc:
        raise BenchFailed(
            f"MQTT broker {url}: {exc} (start Mosquitto with `make services`, or "
            "`mosquitto -d -c /etc/mosquitto/mosquitto.conf`)"
        ) from exc


async def run(opts: Options) -> list[Outcome]:
    main = asyncio.current_task()
    assert main is not None
    # a SIGTERM to the bench cleans up as Ctrl-C does (asyncio.run cancels on SIGINT)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    await check_broker(opts.broker)
    print_header(opts)
    outcomes = []
    for key in opts.scenarios:
        outcomes.append(await run_scenario(SCENARIOS[key], opts, uuid.uuid4().hex[:10]))
    return outcomes


# -- output ----------------------------------------------------------------------------------


def print_header(opts: Options) -> None:
    helpers = ",".join(map(str, sorted(opts.helpers))) or "(none: same CPU)"
    central = (
        "`fieldloop central` (SQLite, temporary), as in production"
        if opts.central == "real"
        else "a stand-in that acks every message on arrival (--central acker), not central"
    )
    print(
        f"""FieldLoop edge throughput bench
  broker:          {opts.broker}
  acks from:       {central}
  CPUs:            {os.cpu_count()}; measured process (edge agent, then bare client) pinned to \
CPU {opts.cpu}; simulators, central and this script on CPU {helpers}
  window:          >= {opts.seconds:g} s of steady state after {opts.warmup:g} s warm-up, \
between two status writes (every {STATUS_EVERY:g} s)
  scenarios:       {", ".join(SCENARIOS[k].title() for k in opts.scenarios)}""",
        flush=True,
    )


def ms(x: float) -> str:
    return f"{x * 1000:.2f}" if not math.isnan(x) else "-"


def late_cell(xs: Sequence[float]) -> str:
    if not xs:
        return "-"
    return f"{ms(percentile(xs, 50))} / {ms(percentile(xs, 99))} / {ms(max(xs))}"


def report(outcomes: list[Outcome], opts: Options) -> None:
    head = (
        f"{'':<22} {'points/s':>9} {'of offered':>10} {'CPU us/pt':>9} {'core':>6} "
        f"{'lateness p50/p99/max ms':>24} {'skipped':>7} {'RSS MB':>7} {'failed':>6}"
    )
    for o in outcomes:
        sc, a, b = o.scenario, o.agent, o.bare
        print()
        print(sc.title())
        print(head)
        print("-" * len(head))
        for w in (a, b):
            print(
                f"{w.name:<22} {w.points_per_s:9,.0f} {w.points_per_s / sc.offered:10.2%} "
                f"{w.cpu_per_point_us:9.2f} {w.core_share:6.1%} {late_cell(w.lateness):>24} "
                f"{w.skipped:7d} {w.rss_end / 2**20:7.1f} {w.errors:6d}"
            )
        ratio = a.cpu_per_point_us / b.cpu_per_point_us
        print(
            f"{'ours / bare':<22} {'':>9} {'':>10} {ratio:9.2f} {a.core_share / b.core_share:6.1f}"
        )
        if sc.key == "a":
            ok = "met" if a.cpu_per_point_us <= TARGET_US else "NOT met"
            print(
                f"  target <= {TARGET_US:g} us/point: {ok} ({a.cpu_per_point_us:.1f} us/point)\n"
                f"  ThingsBoard IoT Gateway on this load (issue's reference): ~{TB_US:g} us/point "
                f"({TB_CORE:.0%} of one core); ours / TB = {a.cpu_per_point_us / TB_US:.2f}"
            )
        keeps = a.points_per_s >= 0.995 * sc.offered and a.skipped == 0 and a.errors == 0
        print(
            f"  edge agent keeps up with the polls: {'yes' if keeps else 'NO'} "
            f"({a.points_per_s / sc.offered:.2%} of offered, {a.skipped} skipped ticks, "
            f"{a.errors} failed polls, {a.core_share:.0%} of its core)"
        )
        grew = (a.outbox[1] - a.outbox[0]) / a.status_span
        acker = "central" if opts.central == "real" else "the acker"
        if grew > 0.02 * sc.devices:
            print(
                f"  telemetry upstream: NOT keeping up: the outbox grew from {a.outbox[0]:,} to "
                f"{a.outbox[1]:,} messages over the window (+{grew:,.0f}/s): {acker} acked "
                f"~{sc.devices - grew:,.0f} of the {sc.devices:,} batches/s the agent stores"
            )
        else:
            print(
                f"  telemetry upstream: keeping up: outbox {a.outbox[0]:,} -> {a.outbox[1]:,} "
                f"messages over the window ({sc.devices:,} batches/s stored and acked)"
            )
        if a.final:
            f = a.final
            last = "its last status" if f.get("online") else "after the agent stopped"
            print(
                f"  outbox {last}: {f.get('outbox_messages'):,} message(s), "
                f"{f.get('outbox_bytes', 0) / 2**20:.1f} MiB; dropped telemetry samples: "
                f"{f.get('dropped_telemetry_samples')}"
            )
        if a.stop_note:
            print(
                f"  ! the edge agent {a.stop_note}: its clean shutdown (last telemetry flush, "
                "detector state, offline status) did not run; see the README"
            )
        print(
            f"  RSS peak: edge agent {a.rss_peak / 2**20:.1f} MB, bare {b.rss_peak / 2**20:.1f} MB;"
            f" windows: {a.wall:.1f} s (agent), {b.wall:.1f} s (bare)"
        )
        print(
            f"  from the status counters: {a.counted_per_s:,.0f} (agent), {b.counted_per_s:,.0f} "
            f"(bare) points/s, {a.polls - a.errors:,} and {b.polls - b.errors:,} answered polls; "
            f"polls with a known start time in the window: {a.polls_seen:,} and "
            f"{b.polls_seen:,}"
        )
        print(f"  bare lateness by its own clock (exact): {late_cell(b.lateness_exact)} ms")
        for w in (a, b):
            shares = ", ".join(
                f"{k} {v / w.wall:.0%}" for k, v in sorted(w.helpers_cpu.items()) if v > 0
            )
            print(
                f"  during the {w.name} window: CPU {opts.cpu} also ran other processes "
                f"{w.core_others:.1%} of the time, steal {w.core_steal:.1%}; "
                f"elsewhere (share of a core): {shares}"
            )
            if w.core_others > 0.05 or w.core_steal > 0.05:
                print(
                    f"  ! CPU {opts.cpu} was not quiet during the {w.name} window: CPU times and "
                    "lateness are disturbed; rerun on an idle machine"
                )

    if len(outcomes) > 1:
        head2 = f"{'CPU per point':<22} {'ours us':>9} {'bare us':>9} {'ours/bare':>10}"
        print()
        print(head2)
        print("-" * len(head2))
        for o in outcomes:
            name = f"({o.scenario.key}) {o.scenario.offered:,.0f} points/s"
            print(
                f"{name:<22} {o.agent.cpu_per_point_us:9.2f} {o.bare.cpu_per_point_us:9.2f} "
                f"{o.agent.cpu_per_point_us / o.bare.cpu_per_point_us:10.2f}"
            )
    print(
        """
Notes:
  * points/s: achieved, from the start times of the successful polls in the window (per device
    (polls - 1) / (last - first)); the status counters' count is printed below each table.
  * CPU us/pt: user+sys CPU of the process over the window (psutil, sampled at two of its
    status writes) / wall time / points/s. core: that CPU as a share of its one pinned core.
  * lateness: how late polls started against their fixed schedule (t0 + k x interval), from
    the poll start times (the agent's telemetry sample times, from an MQTT subscription and
    the outbox's remainder; the bare client's records), each device's least late poll taken
    as on time: a lower bound (compare the bare client's exact line). skipped: schedule ticks
    without a poll. failed: polls that got no answer."""
    )


# -- roles: simulator and bare client (run as separate processes by the bench) -----------------


async def simulator_role(site_path: Path, part: str) -> None:
    from fieldloop.profiles import load_site
    from simulators.scenarios import Scenario as SimScenario
    from simulators.signals import Constant
    from simulators.site import build_site_simulators

    index, count = (int(x) for x in part.split("/"))
    site = load_site(site_path)

    def constant(device: str) -> SimScenario:
        profile = site.profile_of(next(d for d in site.spec.devices if d.id == device))
        return SimScenario(
            "constant", {r.name: Constant(100.0 + i) for i, r in enumerate(profile.resources)}
        )

    sims = build_site_simulators(site, constant)[index::count]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        for s in sims:
            await s.start()
        print(f"serving {sum(len(s.devices) for s in sims)} device(s) on {len(sims)} port(s)")
        sys.stdout.flush()
        await stop.wait()
    finally:
        for s in sims:
            await s.stop()


async def bare_role(spec: dict[str, Any], out: Path) -> None:
    """The same reads as the agent with nothing but pymodbus and struct: one client per device,
    the collector's schedule (fixed grid, missed ticks skipped), values decoded with one
    precompiled struct per device. Counts polls like the agent's status file, every 5 s."""
    import struct

    from pymodbus.client import AsyncModbusTcpClient
    from pymodbus.exceptions import ModbusException

    n, address, interval = spec["registers"], spec["address"], spec["interval"]
    codec = struct.Struct(f">{n}H")
    counts = {d["id"]: [0, 0] for d in spec["devices"]}  # polls, errors
    # each poll: start (epoch s), lateness by the scheduler's own clock (s), answered
    polls: dict[str, list[tuple[float, float, bool]]] = {d["id"]: [] for d in spec["devices"]}
    latest: dict[str, tuple[int, ...]] = {}
    stopping = asyncio.Event()

    async def poll(dev: dict[str, Any]) -> None:
        client = AsyncModbusTcpClient(
            dev["host"],
            port=dev["port"],
            timeout=spec["timeout"],
            retries=spec["retries"],
            reconnect_delay=0,
        )
        loop = asyncio.get_running_loop()
        c, record, unit = counts[dev["id"]], polls[dev["id"]].append, dev["unit"]
        next_tick = loop.time()
        try:
            while not stopping.is_set():
                started, late = time.time(), loop.time() - next_tick
                c[0] += 1
                try:
                    if not client.connected:
                        await client.connect()
                    rr = await client.read_holding_registers(address, count=n, device_id=unit)
                    if rr.isError():
                        raise ModbusException(f"device answered {rr}")
                    latest[dev["id"]] = codec.unpack(codec.pack(*rr.registers))
                    record((started, late, True))
                except (ModbusException, OSError, TimeoutError):
                    c[1] += 1
                    record((started, late, False))
                    client.close()
                next_tick += interval
                now = loop.time()
                if next_tick < now:
                    next_tick = now + interval - ((now - next_tick) % interval)
                await asyncio.sleep(next_tick - now)
        finally:
            client.close()

    def save_status() -> None:
        doc = {
            "time": datetime.now().astimezone().isoformat(),
            "devices": {k: {"polls": v[0], "errors": v[1]} for k, v in counts.items()},
        }
        tmp = out / "status.json.tmp"
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, out / "status.json")

    async def status_loop() -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY)
            save_status()

    main = asyncio.current_task()
    assert main is not None

    def stop() -> None:
        # the flag too: on Python 3.11 asyncio.wait_for (inside pymodbus) can swallow a
        # cancellation that arrives with the answer, and the loop would poll on
        stopping.set()
        main.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(status_loop())
            for dev in spec["devices"]:
                tg.create_task(poll(dev))
    except asyncio.CancelledError:
        pass
    finally:
        save_status()
        (out / "result.json").write_text(json.dumps(polls), encoding="utf-8")


def touch(path: Path) -> None:
    path.write_text("ready", encoding="utf-8")


async def acker_role(broker: str, root: str, site: str, ready: Path) -> None:
    """A stand-in for central that acks every event and telemetry batch as it arrives, without
    parsing it into models or storing it: the edge side of the exchange (publish, ack, delete
    the row) is what production does when central keeps up."""
    import aiomqtt

    from fieldloop.brokers import client_kwargs, parse_broker_url
    from fieldloop.ids import new_id
    from fieldloop.topics import Topics

    topics = Topics(root=root)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def serve() -> None:
        async with aiomqtt.Client(**client_kwargs(parse_broker_url(broker))) as client:  # type: ignore[arg-type]
            await client.subscribe(topics.telemetry(site), qos=1)
            await client.subscribe(topics.events(site), qos=1)
            touch(ready)
            async for m in client.messages:
                doc = json.loads(m.payload)  # type: ignore[arg-type]
                ack = {
                    "schema": "fieldloop.ack/1",
                    "id": new_id(),
                    "site": doc["site"],
                    "acked_id": doc["id"],
                    "device": doc["device"],
                    "asset": doc["asset"],
                    "seq": doc["seq"],
                    "time": datetime.now().astimezone().isoformat(),
                    "result": "committed",
                }
                await client.publish(topics.ack(site), json.dumps(ack).encode(), qos=1)

    task = asyncio.create_task(serve())
    await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED")
    await cancel(task)


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Options | None]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scenario", choices=["a", "b", "all"], default="all", help="default: all")
    p.add_argument(
        "--seconds", type=float, default=30.0, help="steady window per process (s, default 30)"
    )
    p.add_argument("--warmup", type=float, default=10.0, help="warm-up before it (s, default 10)")
    p.add_argument(
        "--broker", default=DEFAULT_BROKER, help=f"MQTT broker (default {DEFAULT_BROKER})"
    )
    p.add_argument(
        "--cpu", type=int, help="CPU to pin the measured process to (default: the last one)"
    )
    p.add_argument(
        "--central",
        choices=["real", "acker"],
        default="real",
        help="who acks the agent's messages: `fieldloop central` on SQLite (default), or\n"
        "a stand-in that acks every message at once without storing it (when central\n"
        "cannot keep up on the helper CPU and the agent would publish less than it stores)",
    )
    # internal: the bench runs its simulator and bare client processes through this same file
    p.add_argument("--role", choices=["simulator", "bare", "acker"], help=argparse.SUPPRESS)
    p.add_argument("--topic-root", help=argparse.SUPPRESS)
    p.add_argument("--site-id", help=argparse.SUPPRESS)
    p.add_argument("--site", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--part", default="0/1", help=argparse.SUPPRESS)
    p.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.role:
        return a, None
    if a.seconds <= 0 or a.warmup < 0:
        p.error("--seconds must be > 0 and --warmup >= 0")
    available = sorted(os.sched_getaffinity(0))
    cpu = available[-1] if a.cpu is None else a.cpu
    if cpu not in available:
        p.error(f"--cpu {cpu}: this process may run on CPUs {available}")
    helpers = set(available) - {cpu} or {cpu}
    return a, Options(
        scenarios=["a", "b"] if a.scenario == "all" else [a.scenario],
        seconds=a.seconds,
        warmup=a.warmup,
        broker=a.broker,
        central=a.central,
        cpu=cpu,
        helpers=helpers,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args, opts = parse_args(argv)
    if args.role == "simulator":
        asyncio.run(simulator_role(args.site, args.part))
        return 0
    if args.role == "bare":
        asyncio.run(bare_role(json.loads(args.spec.read_text(encoding="utf-8")), args.out))
        return 0
    if args.role == "acker":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(acker_role(args.broker, args.topic_root, args.site_id, args.out))
        return 0
    assert opts is not None
    # children inherit this: everything but the measured process stays off its CPU
    os.sched_setaffinity(0, opts.helpers)
    try:
        outcomes = asyncio.run(run(opts))
    except BenchFailed as exc:
        print(f"bench FAILED: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench interrupted; all its processes were stopped", file=sys.stderr)
        return 130
    report(outcomes, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
