"""`fieldloop demo --check` as a user runs it: to a closed ticket, exit 0 — on the embedded broker
with SQLite (in-process main) and on the real Mosquitto with PostgreSQL (a real process)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import free_port
from support import REPO, Processes, write_site

from fieldloop.cli import main

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(150)  # the whole demo to a closed ticket (--check allows 60 s)
def test_demo_check_embedded_broker_and_sqlite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = write_site(tmp_path, port=free_port(), site="demo-site", poll_interval=0.5)
    code = main(
        ["demo", "--check", "--site", str(site), "--port", str(free_port()),
         "--broker-port", str(free_port()), "--topic-root", f"e2e-{uuid.uuid4().hex[:10]}"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    # the steps a user watches, in order
    steps = [
        "crossed > 95.0",
        "stored in outbox, publishing",
        "==> ticket #1 opened for asset CH-01",
        "==> ticket #1 offered automatically to",
        "ranked first",  # the dispatch explanation
        "eng.wu declined (拒单)",
        "eng.li accepted (接单)",
        "readings around the fault (GET /tickets/1/telemetry)",  # from the telemetry store
        "on site (到达",
        "waiting for a gasket (待料)",
        "back to normal",
        "completed ticket #1",
        "the customer confirmed (验收通过) and rated 5/5",
        "closed ticket #1",
        "audit chain verified",
        "demo --check OK",
    ]
    positions = [out.find(s) for s in steps]
    assert -1 not in positions, out
    assert positions == sorted(positions), out
    assert "/docs" in out and "/board" in out


@pytest.mark.timeout(150)  # the whole demo as a process (its own limit is 120 s)
def test_demo_check_real_mosquitto_and_postgresql(
    mosquitto: str, pg_url: str, tmp_path: Path
) -> None:
    site = write_site(tmp_path, port=free_port(), site="demo-site", poll_interval=0.5)
    r = subprocess.run(
        [sys.executable, "-m", "fieldloop", "demo", "--check", "--broker", mosquitto,
         "--db", pg_url, "--site", str(site), "--port", str(free_port()),
         "--topic-root", f"e2e-{uuid.uuid4().hex[:10]}"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "demo --check OK" in r.stdout
    assert "mqtt://127.0.0.1:1883" in r.stdout


def test_demo_refuses_a_taken_port_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    import socket

    site = write_site(tmp_path, port=free_port(), site="demo-site")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        code = main(["demo", "--check", "--site", str(site), "--port", str(taken),
                     "--broker-port", str(free_port())])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert f"127.0.0.1:{taken} is already in use" in err and "--port" in err


def test_ctrl_c_stops_the_demo_and_frees_its_ports(processes: Processes, tmp_path: Path) -> None:
    import signal
    import socket
    import time

    sim, http, mqtt = free_port(), free_port(), free_port()
    site = write_site(tmp_path, port=sim, site="demo-site", poll_interval=0.5)
    proc = processes.popen(
        [sys.executable, "-m", "fieldloop", "demo", "--site", str(site), "--port", str(http),
         "--broker-port", str(mqtt), "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            if "edge uplink connected" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    assert "fieldloop demo: stopped" in out
    assert "Traceback" not in out
    for port in (sim, http, mqtt):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free again
