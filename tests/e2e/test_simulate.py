"""`fieldloop simulate` as a tester runs it: a site with two devices behind one port (two unit
ids, as behind a serial gateway) and one of its own, a scenario file, the ground truth written
as JSON Lines, real reads, Ctrl-C that frees every port; bad scenario files refused."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, free_port
from pymodbus.client import ModbusTcpClient
from support import Processes

from fieldloop.cli import main
from fieldloop.registers import decode

SCENARIO = """apiVersion: fieldloop/v1
kind: Scenario
name: e2e
profiles:
  chiller:
    signals:
      discharge_temp: {type: constant, value: 82.5}
devices:
  chiller-2:
    signals:
      discharge_temp: {type: step, before: 70, after: 99, at: 1h}
    faults:
      - {kind: exception, from: 2h, to: 3h, code: 6}
site_faults:
  - {kind: comm_loss, from: 10h, to: 10h}
"""


def write_site(tmp_path: Path, shared: int, own: int) -> Path:
    devices = [("chiller-1", shared, 1), ("chiller-2", shared, 2), ("chiller-3", own, 1)]
    lines = [
        "apiVersion: fieldloop/v1",
        "kind: Site",
        "site: sim",
        f"profiles_dir: {REPO}/device_profiles",
        "devices:",
    ]
    for i, (dev, port, unit) in enumerate(devices):
        lines += [
            f"  - id: {dev}",
            f"    asset: CH-{i}",
            "    profile: chiller",
            f"    modbus_tcp: {{host: 127.0.0.1, port: {port}, unit_id: {unit}}}",
        ]
    path = tmp_path / "site.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def discharge(port: int, unit: int) -> float:
    with ModbusTcpClient("127.0.0.1", port=port, timeout=2) as c:
        rr = c.read_holding_registers(0, count=2, device_id=unit)
        assert not rr.isError(), rr
        return float(decode(rr.registers, "float32"))  # type: ignore[arg-type]


def test_simulate_a_site_from_a_scenario_file_with_ground_truth(
    processes: Processes, tmp_path: Path
) -> None:
    shared, own = free_port(), free_port()
    site = write_site(tmp_path, shared, own)
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO.replace("to: 10h}", "to: 11h}"), encoding="utf-8")
    truth = tmp_path / "truth.jsonl"
    proc = processes.popen(
        [sys.executable, "-m", "fieldloop", "simulate", "--site", str(site), "--scenario",
         str(scenario), "--truth", str(truth), "--seed", "7"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        served = []
        for line in proc.stdout:
            served.append(line)
            if "ground truth" in line or time.monotonic() > deadline:
                break
        assert any(f"serving 2 device(s) on 127.0.0.1:{shared}" in x for x in served), served
        assert discharge(shared, 1) == 82.5  # the profile's signal
        assert discharge(shared, 2) == 70.0  # the device's own, before its step
        assert discharge(own, 1) == 82.5
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    for port in (shared, own):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free again
    rows = [json.loads(x) for x in truth.read_text(encoding="utf-8").splitlines()]
    assert [(r["device"], r["resource"], r["kind"], r["start_s"], r["end_s"]) for r in rows] == [
        ("chiller-2", "discharge_temp", "step", 3600.0, None),
        ("chiller-2", "*", "exception", 7200.0, 10800.0),
        ("chiller-1", "*", "comm_loss", 36000.0, 39600.0),
        ("chiller-2", "*", "comm_loss", 36000.0, 39600.0),
        ("chiller-3", "*", "comm_loss", 36000.0, 39600.0),
    ]
    assert all(r["scenario"] == "e2e" and r["start"].endswith("+00:00") for r in rows)


def test_a_bad_scenario_file_is_refused_with_its_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = write_site(tmp_path, free_port(), free_port())
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")  # to: 10h is not after from: 10h
    assert main(["simulate", "--site", str(site), "--scenario", str(scenario)]) == 2
    err = capsys.readouterr().err
    assert f"{scenario}:15:5: site_faults.0: to (36000s) must come after" in err
    assert main(["simulate", "--site", str(site), "--scenario", "no_such"]) == 2
    assert "shipped scenarios:" in capsys.readouterr().err


def test_a_port_in_use_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken, own = free_port(), free_port()
    site = write_site(tmp_path, taken, own)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        assert main(["simulate", "--site", str(site)]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{taken}" in err and "in use" in err
    with socket.socket() as s:
        s.bind(("127.0.0.1", own))  # the other port, started first or not, is free again
