"""Simulator throughput: requests/s and CPU per request serving 500 devices, against bare pymodbus.

One process serves every device, as the issue asks ("at least 500 Modbus devices from one
process on this 2-core machine"): 50 ports x 10 unit ids (as behind serial gateways), each device
50 uint16 holding registers with constant signals.

* **ours**: `simulators.modbus_server.ModbusSimulator` / `SimulatedDevice`, built with
  `simulators.site.build_site_simulators` from a site file, exactly as `edge_throughput.py
  --role simulator` builds them (that role is run here, in a process of its own).
* **bare**: plain pymodbus `ModbusTcpServer`s in a process of their own, serving the same ports
  x unit ids x registers from a static `SimDevice`/`SimData` datastore, no action callback.
* **load**: one process with one pymodbus `AsyncModbusTcpClient` per device, each reading the
  whole block as fast as it is answered (closed loop: one request outstanding per device, 500
  in flight), the same against both servers, one after the other.

The server under test is pinned to one CPU, the load generator (and this script) to the other.
Over a window of --seconds after --warmup the load generator counts the answers and samples the
server's user+sys CPU (psutil): requests/s and CPU us per request, then ours / bare.

    .venv/bin/python bench/simulator_throughput.py [--seconds N] [--warmup S] [--devices N]
                                                   [--registers N] [--cpu N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from edge_throughput import (
    UNITS_PER_PORT,
    BenchFailed,
    Child,
    Scenario,
    cpu_s,
    device_ids,
    free_ports,
    percentile,
    python_argv,
    wait_ports,
    write_profile,
    write_site,
)

EDGE_BENCH = Path(__file__).resolve().parent / "edge_throughput.py"
BASE_VALUE = 100  # register i holds 100 + i on both servers (edge_throughput's Constant signals)
CLIENT_TIMEOUT = 3.0  # s, per request; a request not answered in time counts as an error


@dataclass
class Options:
    seconds: float
    warmup: float
    devices: int
    registers: int
    cpu: int
    helpers: set[int]


@dataclass
class Result:
    """One server over the load generator's window."""

    name: str
    wall: float  # s
    answered: int  # correct answers in the window
    wrong: int  # answers with other values than served, or Modbus exception responses
    errors: int  # requests without an answer (timeout, connection lost)
    served: int  # devices with at least one correct answer in the window
    devices: int
    server_cpu: float  # user+sys s of the server process in the window
    load_cpu: float  # user+sys s of the load generator in the window
    core_others: float  # share of the server's CPU other processes used in the window
    core_irq: float  # share of it spent in interrupts (loopback TCP's softirq, mostly)
    core_steal: float  # share of it the hypervisor took
    rss: int  # server RSS at the window's end
    latency: list[float]  # s, p50 / p99 / max of the answered requests

    @property
    def rate(self) -> float:
        return self.answered / self.wall

    @property
    def core(self) -> float:
        return self.server_cpu / self.wall

    @property
    def load_core(self) -> float:
        return self.load_cpu / self.wall

    @property
    def cpu_per_request_us(self) -> float:
        return self.server_cpu / self.answered * 1e6 if self.answered else math.nan


def scenario(opts: Options) -> Scenario:
    # the edge bench's scenario type only carries the shape here (no agent polls these devices)
    return Scenario(
        "sim", devices=opts.devices, registers=opts.registers, interval=1.0, sim_procs=1
    )


def write_spec(path: Path, sc: Scenario, ports: list[int]) -> None:
    """What the bare server serves and the load generator reads: (port, unit) per device."""
    spec = {
        "registers": sc.registers,
        "devices": [[ports[p], unit] for _dev, p, unit in device_ids(sc)],
    }
    path.write_text(json.dumps(spec), encoding="utf-8")


# -- roles: bare server and load generator (run as separate processes by the bench) -----------


async def bare_server_role(spec: dict[str, Any]) -> None:
    """Plain pymodbus: one ModbusTcpServer per port, a static SimDevice per unit id with the
    block layout SimulatedDevice.sim_device() builds (coils, discrete inputs, holding and input
    registers apart), the holding registers holding the values ours computes; no action."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    n = spec["registers"]
    units: dict[int, list[int]] = {}
    for port, unit in spec["devices"]:
        units.setdefault(port, []).append(unit)

    values = [BASE_VALUE + i for i in range(n)]

    def device(unit: int) -> SimDevice:
        def bits() -> list[SimData]:
            return [SimData(0, count=16, values=False, datatype=DataType.BITS)]

        return SimDevice(
            unit,
            simdata=(
                bits(),
                bits(),
                [SimData(0, values=list(values), datatype=DataType.REGISTERS)],
                [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
            ),
        )

    servers = [
        ModbusTcpServer([device(u) for u in us], address=("127.0.0.1", port))
        for port, us in units.items()
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        for s in servers:
            await s.serve_forever(background=True)
        print(f"serving {len(spec['devices'])} device(s) on {len(servers)} port(s)", flush=True)
        await stop.wait()
    finally:
        for s in servers:
            await s.shutdown()


async def load_role(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Closed loop: one client per device, one request outstanding each, for warm-up + window.
    Samples the server's CPU (and its own) at the window's edges; returns the counts."""
    from pymodbus.client import AsyncModbusTcpClient
    from pymodbus.exceptions import ModbusException

    n = spec["registers"]
    expected = [BASE_VALUE + i for i in range(n)]
    devices = spec["devices"]
    answered = [0] * len(devices)
    wrong = [0] * len(devices)
    errors = [0] * len(devices)
    latencies: list[float] = []
    recording = False
    stopping = asyncio.Event()
    server = psutil.Process(args.server_pid)
    me = psutil.Process()

    async def worker(i: int, port: int, unit: int) -> None:
        client = AsyncModbusTcpClient(
            "127.0.0.1", port=port, timeout=CLIENT_TIMEOUT, retries=0, reconnect_delay=0
        )
        clock = time.perf_counter
        try:
            while not stopping.is_set():
                try:
                    if not client.connected and not await client.connect():
                        raise ConnectionError(f"cannot connect to 127.0.0.1:{port}")
                    t0 = clock()
                    rr = await client.read_holding_registers(0, count=n, device_id=unit)
                    if rr.isError() or rr.registers != expected:
                        wrong[i] += 1
                        continue
                    answered[i] += 1
                    if recording:
                        latencies.append(clock() - t0)
                except (ModbusException, OSError, TimeoutError):
                    errors[i] += 1
                    client.close()
                    await asyncio.sleep(0.1)
        finally:
            client.close()

    def sample() -> dict[str, Any]:
        core = psutil.cpu_times(percpu=True)[args.server_cpu]
        return {
            "t": time.perf_counter(),
            "answered": list(answered),
            "wrong": list(wrong),
            "errors": list(errors),
            "server_cpu": cpu_s(server),
            "load_cpu": cpu_s(me),
            "busy": core.user + core.nice + core.system,
            "irq": core.irq + core.softirq,
            "steal": core.steal,
        }

    async def measure() -> dict[str, Any]:
        nonlocal recording
        deadline = time.monotonic() + 60
        while not all(answered):
            if time.monotonic() > deadline:
                silent = sum(1 for a in answered if not a)
                raise BenchFailed(f"{silent} device(s) never answered within 60 s")
            await asyncio.sleep(0.1)
        print(f"every device answered; warm-up {args.warmup:g} s", flush=True)
        await asyncio.sleep(args.warmup)
        s0 = sample()
        recording = True
        await asyncio.sleep(args.seconds)
        s1 = sample()
        recording = False
        return {"start": s0, "end": s1, "rss": server.memory_info().rss, "latency": latencies}

    tasks = [asyncio.create_task(worker(i, p, u)) for i, (p, u) in enumerate(devices)]
    try:
        result = await measure()
    finally:
        stopping.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return result


# -- the bench ---------------------------------------------------------------------------------


def to_result(name: str, doc: dict[str, Any], devices: int) -> Result:
    s0, s1 = doc["start"], doc["end"]
    wall = s1["t"] - s0["t"]
    server_cpu = s1["server_cpu"] - s0["server_cpu"]

    def delta(key: str) -> list[int]:
        return [b - a for a, b in zip(s0[key], s1[key], strict=True)]

    answered = delta("answered")
    lat = doc["latency"]
    return Result(
        name=name,
        wall=wall,
        answered=sum(answered),
        wrong=sum(delta("wrong")),
        errors=sum(delta("errors")),
        served=sum(1 for a in answered if a > 0),
        devices=devices,
        server_cpu=server_cpu,
        load_cpu=s1["load_cpu"] - s0["load_cpu"],
        core_others=max(0.0, s1["busy"] - s0["busy"] - server_cpu) / wall,
        core_irq=(s1["irq"] - s0["irq"]) / wall,
        core_steal=(s1["steal"] - s0["steal"]) / wall,
        rss=doc["rss"],
        latency=[percentile(lat, 50), percentile(lat, 99), max(lat, default=math.nan)],
    )


async def measure(name: str, server: Child, ports: list[int], spec: Path, opts: Options) -> Result:
    """Run the load generator against a started server process; stops the server after."""
    tmp = spec.parent
    key = name.split()[0]
    out = tmp / f"load-{key}.json"
    try:
        await wait_ports(ports, [server], 60)
        load = Child(
            f"load generator ({key})",
            python_argv(
                __file__, "--role", "load", "--spec", str(spec), "--out", str(out),
                "--server-pid", str(server.pid), "--server-cpu", str(opts.cpu),
                "--seconds", str(opts.seconds), "--warmup", str(opts.warmup),
            ),
            tmp / f"load-{key}.log",
            opts.helpers,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60 + opts.warmup + opts.seconds + 30
            while load.alive():
                server.check()
                if time.monotonic() > deadline:
                    raise BenchFailed(f"{load.name} did not finish:\n{load.tail()}")
                await asyncio.sleep(0.2)
        finally:
            code = load.stop(within=10)
        if code != 0 or not out.exists():
            raise BenchFailed(f"{load.name} exited with code {code}:\n{load.tail()}")
        server.check()
    finally:
        server.stop(within=10)
    return to_result(name, json.loads(out.read_text(encoding="utf-8")), opts.devices)


async def run(opts: Options) -> tuple[Result, Result]:
    main = asyncio.current_task()
    assert main is not None
    # a SIGTERM to the bench cleans up as Ctrl-C does (asyncio.run cancels on SIGINT)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    sc = scenario(opts)
    print_header(opts, sc)
    tag = uuid.uuid4().hex[:10]
    with tempfile.TemporaryDirectory(prefix="fieldloop-simbench-") as tmpname:
        tmp = Path(tmpname)
        (tmp / "profiles").mkdir()
        write_profile(tmp / "profiles", sc)

        ports = free_ports(sc.ports)
        write_site(tmp / "site.yaml", sc, f"bench-sim-{tag}", ports, tmp / "profiles")
        write_spec(tmp / "ours.json", sc, ports)
        print("  ours: ModbusSimulator ...", flush=True)
        ours_proc = Child(
            "simulator (ours)",
            python_argv(
                str(EDGE_BENCH), "--role", "simulator", "--site", str(tmp / "site.yaml"),
                "--part", "0/1",
            ),
            tmp / "simulator.log",
            {opts.cpu},
        )  # fmt: skip
        ours = await measure("ours (ModbusSimulator)", ours_proc, ports, tmp / "ours.json", opts)
        print(f"  ours: {ours.rate:,.0f} requests/s, {ours.cpu_per_request_us:.1f} us/request")

        ports = free_ports(sc.ports)
        write_spec(tmp / "bare.json", sc, ports)
        print("  bare: pymodbus ModbusTcpServer ...", flush=True)
        bare_proc = Child(
            "bare pymodbus server",
            python_argv(__file__, "--role", "bare-server", "--spec", str(tmp / "bare.json")),
            tmp / "bare.log",
            {opts.cpu},
        )
        bare = await measure("bare pymodbus", bare_proc, ports, tmp / "bare.json", opts)
        print(f"  bare: {bare.rate:,.0f} requests/s, {bare.cpu_per_request_us:.1f} us/request")
    return ours, bare


# -- output ------------------------------------------------------------------------------------


def print_header(opts: Options, sc: Scenario) -> None:
    helpers = ",".join(map(str, sorted(opts.helpers)))
    print(
        f"""FieldLoop simulator throughput bench
  devices:         {sc.devices} in one server process: {sc.ports} ports x {UNITS_PER_PORT} unit \
ids, {sc.registers} uint16 holding registers each (constant)
  load:            one pymodbus client per device reading all {sc.registers} registers, \
closed loop ({sc.devices} requests in flight)
  CPUs:            {os.cpu_count()}; server under test pinned to CPU {opts.cpu}; load generator \
and this script on CPU {helpers}
  window:          {opts.seconds:g} s after every device answered and {opts.warmup:g} s warm-up""",
        flush=True,
    )


def ms(x: float) -> str:
    return f"{x * 1000:.1f}" if not math.isnan(x) else "-"


def report(ours: Result, bare: Result, opts: Options) -> None:
    head = (
        f"{'':<24} {'requests/s':>10} {'CPU us/req':>10} {'core':>6} {'latency p50/p99/max ms':>23}"
        f" {'served':>9} {'errors':>6} {'wrong':>5} {'RSS MB':>7}"
    )
    print()
    print(head)
    print("-" * len(head))
    for r in (ours, bare):
        lat = " / ".join(ms(x) for x in r.latency)
        print(
            f"{r.name:<24} {r.rate:10,.0f} {r.cpu_per_request_us:10.1f} {r.core:6.1%} {lat:>23} "
            f"{r.served:>4}/{r.devices:<4} {r.errors:6d} {r.wrong:5d} {r.rss / 2**20:7.1f}"
        )
    print(
        f"{'ours / bare':<24} {ours.rate / bare.rate:10.2f} "
        f"{ours.cpu_per_request_us / bare.cpu_per_request_us:10.2f} {ours.core / bare.core:6.2f}"
    )
    print()
    ok = ours.served == ours.devices and ours.errors == 0 and ours.wrong == 0
    print(
        f"  {ours.devices} devices served from one process: {'yes' if ok else 'NO'} "
        f"({ours.served} of {ours.devices} answered in the window, {ours.errors} errors, "
        f"{ours.wrong} wrong answers; {ours.answered:,} answers in {ours.wall:.1f} s)"
    )
    print(
        f"  per device: {ours.rate / ours.devices:,.1f} reads/s (ours), "
        f"{bare.rate / bare.devices:,.1f} (bare); the edge bench's (b) polls each once a second"
    )
    for r in (ours, bare):
        print(
            f"  during the {r.name} window: load generator {r.load_core:.0%} of its core; CPU "
            f"{opts.cpu} also ran other processes {r.core_others:.1%} of the time, interrupts "
            f"{r.core_irq:.1%} (loopback TCP), steal {r.core_steal:.1%}"
        )
        if r.core_others > 0.05 or r.core_steal > 0.05:
            print(f"  ! CPU {opts.cpu} was not quiet during the {r.name} window: rerun")
        if r.load_core > 0.9 and r.core < 0.95:
            print(
                f"  ! the load generator (busy {r.load_core:.0%}) held back the {r.name} server "
                f"(busy {r.core:.0%}): its requests/s is a lower bound, about "
                f"{1e6 / r.cpu_per_request_us:,.0f} on a full core; CPU per request holds"
            )
    print(
        """
Notes:
  * requests/s: correct answers (all registers equal to the served values) in the window / its
    wall time. CPU us/req: user+sys CPU of the server process over the window (psutil) / the
    answers in it. core: that CPU as a share of its one pinned core.
  * latency: time from sending a request to its answer in the load generator, which runs
    500 clients on one core: with a saturated core this is mostly queueing (Little's law:
    500 in flight / requests/s), not the server's service time.
  * errors: requests without an answer within 3 s or on a lost connection; wrong: exception
    responses or other values than served."""
    )


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Options | None]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0, help="window per server (s, default 20)")
    p.add_argument("--warmup", type=float, default=5.0, help="warm-up before it (s, default 5)")
    p.add_argument("--devices", type=int, default=500, help="devices served (default 500)")
    p.add_argument(
        "--registers", type=int, default=50, help="uint16 holding registers a device (default 50)"
    )
    p.add_argument("--cpu", type=int, help="CPU to pin the server to (default: the last one)")
    # internal: the bench runs its bare server and load generator through this same file
    p.add_argument("--role", choices=["bare-server", "load"], help=argparse.SUPPRESS)
    p.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    p.add_argument("--server-cpu", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.role:
        return a, None
    if a.seconds <= 0 or a.warmup < 0:
        p.error("--seconds must be > 0 and --warmup >= 0")
    if not 1 <= a.devices <= 255 * 100 or not 1 <= a.registers <= 125:
        p.error("--devices must be 1..25500 and --registers 1..125 (one read request)")
    available = sorted(os.sched_getaffinity(0))
    cpu = available[-1] if a.cpu is None else a.cpu
    if cpu not in available:
        p.error(f"--cpu {cpu}: this process may run on CPUs {available}")
    helpers = set(available) - {cpu} or {cpu}
    return a, Options(a.seconds, a.warmup, a.devices, a.registers, cpu, helpers)


def main(argv: Sequence[str] | None = None) -> int:
    args, opts = parse_args(argv)
    if args.role == "bare-server":
        asyncio.run(bare_server_role(json.loads(args.spec.read_text(encoding="utf-8"))))
        return 0
    if args.role == "load":
        try:
            result = asyncio.run(load_role(json.loads(args.spec.read_text(encoding="utf-8")), args))
        except BenchFailed as exc:
            print(f"load generator FAILED: {exc}", file=sys.stderr)
            return 1
        args.out.write_text(json.dumps(result), encoding="utf-8")
        return 0
    assert opts is not None
    # children inherit this: everything but the server under test stays off its CPU
    os.sched_setaffinity(0, opts.helpers)
    try:
        ours, bare = asyncio.run(run(opts))
    except BenchFailed as exc:
        print(f"bench FAILED: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench interrupted; all its processes were stopped", file=sys.stderr)
        return 130
    report(ours, bare, opts)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
