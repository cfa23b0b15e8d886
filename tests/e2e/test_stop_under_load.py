"""Ctrl-C (SIGINT) and SIGTERM of `fieldloop demo`, `fieldloop central` and `fieldloop edge` at
any moment (the first instant, start-up, the demo's engineer mid-flow, central serving requests,
the edge draining a backlog): each exits within 5 s, by its graceful path, with its ports free,
while another process keeps every core busy."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from support import REPO, Processes, outbox_rows, write_rules, write_site

from edge_agent.outbox import Outbox
from edge_agent.readings import Reading

pytestmark = pytest.mark.e2e

STOP_WITHIN = 5.0
SIGNALS = [signal.SIGINT, signal.SIGTERM]


@pytest.fixture
def cpu_hog(processes: Processes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every core kept busy by other processes for the test's duration. One such test at a time
    across the parallel workers (a lock file beside theirs), so the suite is loaded by one hog,
    not several."""
    lock = tmp_path_factory.getbasetemp().parent / "cpu-hog.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        for _ in range(os.cpu_count() or 2):
            processes.popen([sys.executable, "-c", "while True: pass"])
        yield


class Running:
    """A fieldloop process whose output is read as it comes, so a test can wait for a line."""

    def __init__(self, processes: Processes, args: list[str]) -> None:
        self.proc = processes.popen(
            [sys.executable, "-m", "fieldloop", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        )  # fmt: skip
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._new:
                self.lines.append(line)
                self._new.notify_all()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        with self._new:
            while not any(text in line for line in self.lines):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"never printed {text!r}:\n{self.output}")
                self._new.wait(0.1)

    def stop(self, sig: signal.Signals) -> float:
        """Send ``sig``; the seconds until the process has exited (failing past STOP_WITHIN)."""
        sent = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(STOP_WITHIN + 5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_WITHIN + 5:g} s after {sig.name}:\n{self.output}")
        took = time.monotonic() - sent
        self._reader.join(5)
        return took


def _assert_stopped(run: Running, sig: signal.Signals, took: float, code: int, ports: list[int]):
    out = run.output
    assert took <= STOP_WITHIN, f"{took:.1f} s after {sig.name}:\n{out}"
    assert run.proc.returncode == code, f"exit {run.proc.returncode} after {sig.name}:\n{out}"
    assert "Traceback" not in out, out
    assert "exiting now" not in out, out  # the graceful path, not the last resort
    for port in ports:  # free for the next start (as any server binds: SO_REUSEADDR, since the
        with socket.socket() as s:  # connections it closed linger in TIME_WAIT a while)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()


DEMO_MOMENTS = {
    # central is starting (migrations, rules) while the broker and simulator already run
    "start-up": "embedded MQTT broker",
    # the edge agent just started, its uplink connecting to the broker
    "edge-connecting": "edge agent for site",
    # the scripted engineer between two steps of the job
    "mid-flow": "accepted (接单)",
}


@pytest.mark.timeout(120)  # the demo takes about 20 s to reach its engineer on a loaded machine
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
@pytest.mark.parametrize("moment", list(DEMO_MOMENTS))
def test_the_demo_stops_within_5s(
    cpu_hog: None, processes: Processes, tmp_path: Path, moment: str, sig: signal.Signals
) -> None:
    sim, http, mqtt = free_port(), free_port(), free_port()
    site = write_site(tmp_path, port=sim, site="demo-site", poll_interval=0.5)
    run = Running(processes, ["demo", "--site", str(site), "--port", str(http), "--broker-port",
                              str(mqtt), "--data-dir", str(tmp_path / "data")])  # fmt: skip
    run.wait_for(DEMO_MOMENTS[moment])
    took = run.stop(sig)
    _assert_stopped(run, sig, took, 128 + sig, [sim, http, mqtt])
    assert "fieldloop demo: stopped" in run.output


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_central_stops_within_5s_at_any_moment(
    cpu_hog: None, processes: Processes, mosquitto: str, tmp_path: Path, sig: signal.Signals
) -> None:
    def start(name: str) -> tuple[Running, int]:
        port = free_port()
        args = ["central", "--db", f"sqlite:///{tmp_path / name}.db", "--port", str(port),
                "--broker", mosquitto, "--topic-root", f"stop-{uuid.uuid4().hex[:10]}"]  # fmt: skip
        return Running(processes, args), port

    # the first instant: still importing (the interpreter's own start, before any code of ours
    # runs, is the one moment no program can catch a signal in)
    run, port = start("first")
    time.sleep(0.3)
    _assert_stopped(run, sig, run.stop(sig), 0, [port])

    # start-up: the telemetry store is ready, the rules are still loading
    run, port = start("startup")
    run.wait_for("telemetry store")
    _assert_stopped(run, sig, run.stop(sig), 0, [port])

    # serving: requests in flight when the signal lands
    run, port = start("serving")
    run.wait_for("central consuming")
    answered: list[int] = []
    done = threading.Event()

    def clients() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2) as c:
            while not done.is_set():
                with contextlib.suppress(httpx.HTTPError):  # refused once it stops
                    answered.append(c.get("/healthz").status_code)

    callers = [threading.Thread(target=clients, daemon=True) for _ in range(4)]
    for t in callers:
        t.start()
    time.sleep(1.0)
    try:
        took = run.stop(sig)
    finally:
        done.set()
        for t in callers:
            t.join(5)
    assert 200 in answered
    _assert_stopped(run, sig, took, 0, [port])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_the_edge_stops_within_5s_during_start_up_and_a_backlog_flush(
    cpu_hog: None, processes: Processes, mosquitto: str, tmp_path: Path, sig: signal.Signals
) -> None:
    sim_port = free_port()
    site = write_site(tmp_path, port=sim_port, poll_interval=0.02)
    simulator = Running(processes, ["simulate", "--site", str(site), "--scenario", "normal_day"])
    simulator.wait_for("serving 1 device(s)")
    data = tmp_path / "edge"
    outbox = data / "outbox-test-site.sqlite"
    root = f"stop-{uuid.uuid4().hex[:10]}"

    def edge(broker: str) -> Running:
        return Running(processes, ["edge", "--site", str(site), "--rules",
                                   str(write_rules(tmp_path)), "--broker", broker, "--data-dir",
                                   str(data), "--topic-root", root])  # fmt: skip

    # start-up: the outbox is open, the first polls are going out
    run = edge(mosquitto)
    run.wait_for("edge agent for site")
    _assert_stopped(run, sig, run.stop(sig), 0, [])

    # a backlog (as after a long outage) that the edge is publishing when the signal lands
    backlog = Outbox(outbox)
    try:
        at = datetime.now(UTC) - timedelta(hours=1)
        readings = [
            Reading("chiller-1", "CH-01", "discharge_temp", at + timedelta(seconds=k), 80.0)
            for k in range(200)
        ]
        for _ in range(20):
            backlog.append_telemetry("test-site", [("chiller-1", "CH-01", readings)] * 100)
        events = backlog.count("event")
    finally:
        backlog.close()
    run = edge(mosquitto)
    run.wait_for("edge uplink connected")
    _assert_stopped(run, sig, run.stop(sig), 0, [])
    assert "nothing pending was lost" in run.output, run.output
    # nobody acks here (no central): the whole backlog is still there, nothing half-written
    assert outbox_rows(outbox, "telemetry") >= 2000
    assert outbox_rows(outbox, "event") == events
