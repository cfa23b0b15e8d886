"""Operating the agent: a clean SIGTERM stop that loses nothing and says "offline", the status
command, and writes refused unless the site file allows them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path

import aiomqtt
import pytest
from conftest import free_port
from pymodbus.client import AsyncModbusTcpClient
from support import (
    REPO,
    Processes,
    eventually,
    outbox_rows,
    write_multi_site,
    write_rules,
    write_site,
)

from edge_agent.collectors.modbus import ModbusCollector, WriteRefused
from fieldloop.cli import main
from fieldloop.messages import SiteStatus
from fieldloop.profiles import DeviceInstance, load_profile
from fieldloop.topics import Topics
from simulators.modbus_server import ModbusSimulator, SimulatedDevice
from simulators.scenarios import Scenario, chiller_normal

pytestmark = pytest.mark.integration


async def test_sigterm_stops_cleanly_and_status_tells_the_technician(
    processes: Processes,
    mosquitto: str,
    topics: Topics,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    site = write_site(tmp_path, port=port, poll_interval=0.1)
    data = tmp_path / "edge"
    device = SimulatedDevice(load_profile(REPO / "device_profiles/chiller.yaml"), chiller_normal())
    async with ModbusSimulator([device], "127.0.0.1", port):
        edge = processes.fieldloop(
            ["edge", "--site", str(site), "--rules", str(write_rules(tmp_path)), "--broker",
             mosquitto, "--data-dir", str(data), "--topic-root", topics.root,
             "--status-interval", "0.5"],
            tmp_path / "edge.log",
        )  # fmt: skip

        async def running() -> bool:
            return (data / "status.json").exists()

        await eventually(running, within=20, what="the first status.json")
        assert main(["edge", "status", "--data-dir", str(data)]) == 0
        out = capsys.readouterr().out
        assert "site test-site: agent running" in out
        assert "chiller-1" in out and " ok " in out

        await asyncio.sleep(1.5)  # readings buffered, some telemetry not yet acked (no central)
        edge.send_signal(signal.SIGTERM)
        assert edge.wait(20) == 0
    log = (tmp_path / "edge.log").read_text()
    assert "stopped; nothing pending was lost" in log
    assert "Traceback" not in log
    assert outbox_rows(data / "outbox-test-site.sqlite", "telemetry") >= 1  # kept, not lost
    doc = json.loads((data / "status.json").read_text())
    assert doc["online"] is False
    assert doc["devices"]["chiller-1"]["polls"] >= 10
    assert main(["edge", "status", "--data-dir", str(data)]) == 0
    assert "agent stopped" in capsys.readouterr().out
    # the retained status on the broker says offline too (a clean stop sends no will)
    async with aiomqtt.Client("127.0.0.1", 1883) as c:
        await c.subscribe(topics.status("test-site"), qos=1)
        async for m in c.messages:
            status = SiteStatus.model_validate_json(m.payload)  # type: ignore[arg-type]
            break
    assert status.online is False
    assert status.devices["chiller-1"].comm == "ok"


async def test_writes_are_refused_unless_the_site_file_allows_them(tmp_path: Path) -> None:
    port = free_port()
    profile = load_profile(REPO / "device_profiles/water_pump.yaml")
    sim = SimulatedDevice(profile, Scenario("pump", {}), unit_id=3)

    def device(allow: list[str]) -> DeviceInstance:
        return DeviceInstance.model_validate(
            {"id": "pump-1", "asset": "P-01", "profile": "water_pump", "write_allow": allow,
             "modbus_tcp": {"host": "127.0.0.1", "port": port, "unit_id": 3}}
        )  # fmt: skip

    def noop(*_: object) -> None:
        return None

    async with ModbusSimulator([sim], "127.0.0.1", port):
        locked = ModbusCollector(
            device([]), profile, on_readings=noop, on_failure=noop, on_success=noop
        )
        with pytest.raises(WriteRefused, match="write_allow"):
            await locked.write("speed_setpoint", 55.0)
        assert "speed_setpoint" not in sim.overrides  # nothing reached the device
        allowed = ModbusCollector(
            device(["speed_setpoint"]), profile, on_readings=noop, on_failure=noop,
            on_success=noop,
        )  # fmt: skip
        await allowed.write("speed_setpoint", 55.0)
        with pytest.raises(WriteRefused, match="write_allow"):
            await allowed.write("flow", 1.0)  # still only what is named
        # read back over a separate real client: the device kept the written setpoint
        client = AsyncModbusTcpClient("127.0.0.1", port=port)
        await client.connect()
        rr = await client.read_holding_registers(0, count=1, device_id=3)
        client.close()
        allowed._client.close()
        assert rr.registers == [550]  # 55.0 % at scale 0.1


def _online(status: Path) -> bool:
    return status.exists() and json.loads(status.read_text())["online"]


async def test_sigterm_under_heavy_polling_always_stops_cleanly(
    processes: Processes, mosquitto: str, topics: Topics, tmp_path: Path
) -> None:
    """20 devices polled every 20 ms (1,000 Modbus answers a second in flight): a SIGTERM lands
    while answers and publishes are being awaited, where Python 3.11's wait_for can swallow it.
    Five stops at different moments: every one clean, within seconds, nothing lost."""
    ports = [free_port() for _ in range(20)]
    site = write_multi_site(tmp_path, ports, poll_interval=0.02, timeouts={})
    profile = load_profile(REPO / "device_profiles/chiller.yaml")
    sims = [
        ModbusSimulator([SimulatedDevice(profile, chiller_normal(f"chiller-{i}"))], "127.0.0.1", p)
        for i, p in enumerate(ports)
    ]
    data = tmp_path / "edge"
    async with contextlib.AsyncExitStack() as stack:
        for sim in sims:
            await stack.enter_async_context(sim)
        for run, wait in enumerate([0.7, 1.3, 2.1, 0.9, 1.6]):
            status = data / "status.json"
            status.unlink(missing_ok=True)
            log = tmp_path / f"edge-{run}.log"
            edge = processes.fieldloop(
                ["edge", "--site", str(site), "--rules", str(write_rules(tmp_path)), "--broker",
                 mosquitto, "--data-dir", str(data), "--topic-root", topics.root,
                 "--status-interval", "0.5"],
                log,
            )  # fmt: skip

            async def polling(status: Path = status) -> bool:
                return await asyncio.to_thread(_online, status)

            await eventually(polling, within=20, what="the agent to poll")
            await asyncio.sleep(wait)
            edge.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = await asyncio.to_thread(edge.wait, 20)
            assert code == 0, log.read_text()[-2000:]
            assert time.monotonic() - started < 10
            text = log.read_text()
            assert "stopped; nothing pending was lost" in text and "Traceback" not in text
            assert json.loads(status.read_text())["online"] is False
