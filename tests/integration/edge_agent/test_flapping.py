"""A value flapping 79.9 / 80.1 around a threshold of 80 (compressed: every 0.1 s for 6 s, real
simulator, real Mosquitto, real central): one ticket, and after the flapping event nothing more
until the value settles."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from conftest import free_port
from sqlalchemy import select
from support import eventually, write_site

from central.server import CentralServer
from central.settings import Settings
from central.storage.models import EdgeEvent, Ticket
from edge_agent.agent import EdgeAgent
from fieldloop.brokers import parse_broker_url
from fieldloop.detection import load_detection
from fieldloop.profiles import load_site
from fieldloop.topics import Topics
from simulators.modbus_server import ModbusSimulator, SimulatedDevice
from simulators.scenarios import chiller_normal

pytestmark = pytest.mark.integration

RULES = """apiVersion: fieldloop/v1
kind: DetectionRules
rules:
  - id: chiller.discharge_temp.flappy
    title: Discharge temperature over 80
    profile: chiller
    metric: discharge_temp
    above: 80
    flapping: {transitions: 4, window: 2s}
"""


async def test_flapping_raises_one_ticket(
    mosquitto: str, sqlite_url: str, topics: Topics, tmp_path: Path
) -> None:
    port = free_port()
    site = load_site(write_site(tmp_path, port=port, poll_interval=0.05))
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    rules = load_detection(tmp_path / "rules.yaml")
    device = SimulatedDevice(site.profiles["chiller"], chiller_normal())
    device.overrides["discharge_temp"] = 79.9
    central = CentralServer(
        Settings(db_url=sqlite_url, broker_url=mosquitto, port=free_port(),
                 topic_root=topics.root, consumer_client_id=f"central-{topics.root}")
    )  # fmt: skip
    await central.start()
    agent = EdgeAgent(site, rules, parse_broker_url(mosquitto), tmp_path / "edge", topics=topics)
    try:
        async with ModbusSimulator([device], "127.0.0.1", port):
            task = asyncio.create_task(agent.run())
            try:
                await asyncio.wait_for(agent.uplink.connected.wait(), 10)
                for i in range(60):  # 60 crossings in 6 s
                    device.overrides["discharge_temp"] = 80.1 if i % 2 == 0 else 79.9
                    await asyncio.sleep(0.1)
                device.overrides["discharge_temp"] = 79.9  # settles below

                async def settled() -> bool:
                    return not agent.bank.open_episodes() and agent.outbox.count("event") == 0

                await eventually(settled, within=15, what="the flapping episode to settle")
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with central.app.state.sessions() as s:
            kinds = s.execute(select(EdgeEvent.kind).order_by(EdgeEvent.seq)).scalars().all()
            tickets = s.execute(select(Ticket)).scalars().all()
    finally:
        await central.stop()
    assert kinds == [
        "fault_opened", "fault_cleared", "fault_opened", "fault_cleared", "flapping",
        "fault_cleared",
    ]  # fmt: skip
    assert len(tickets) == 1
    assert tickets[0].fault_active is False
    assert tickets[0].category == "hvac"  # the shipped rules: a chiller fault is HVAC work
