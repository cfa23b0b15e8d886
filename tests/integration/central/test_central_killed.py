"""Central killed with SIGKILL while edge events are flowing: after it restarts, every event the
edge raised is stored exactly once and the outbox drains; nothing is lost or duplicated."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import pytest
from conftest import free_port
from sqlalchemy import select
from support import Processes, central_up, eventually, write_rules, write_site

from central.storage.db import make_engine
from central.storage.models import EdgeEvent, Ticket
from edge_agent.agent import EdgeAgent
from fieldloop.brokers import parse_broker_url
from fieldloop.detection import load_detection
from fieldloop.profiles import load_site
from fieldloop.topics import Topics
from simulators.modbus_server import ModbusSimulator, SimulatedDevice
from simulators.scenarios import chiller_normal

pytestmark = pytest.mark.integration

EPISODES = 6


async def test_events_survive_a_killed_central_exactly_once(
    processes: Processes, mosquitto: str, db_url: str, topics: Topics, tmp_path: Path
) -> None:
    http_port, sim_port = free_port(), free_port()
    site = load_site(write_site(tmp_path, port=sim_port, poll_interval=0.05))
    rules = load_detection(write_rules(tmp_path, hold="0.2s"))
    central_args = [
        "central", "--db", db_url, "--broker", mosquitto, "--port", str(http_port),
        "--topic-root", topics.root,
    ]  # fmt: skip
    env = {"FIELDLOOP_CONSUMER_CLIENT_ID": f"central-{topics.root}"}

    async def start_central(log: str) -> object:
        proc = processes.fieldloop(central_args, tmp_path / log, env)
        await central_up(http_port, within=30)
        return proc

    device = SimulatedDevice(site.profiles["chiller"], chiller_normal())
    central = await start_central("central1.log")
    async with ModbusSimulator([device], "127.0.0.1", sim_port):
        agent = EdgeAgent(
            site, rules, parse_broker_url(mosquitto), tmp_path / "edge", topics=topics,
            resend_after=1.0,
        )  # fmt: skip
        task = asyncio.create_task(agent.run())
        rule_id = rules.rules[0].id
        try:
            await asyncio.wait_for(agent.uplink.connected.wait(), 10)
            for episode in range(1, EPISODES + 1):
                if episode == 3:
                    central.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
                    central.wait(10)  # type: ignore[attr-defined]
                if episode == 5:
                    central = await start_central("central2.log")
                for level, active in ((100.0, True), (80.0, False)):
                    device.overrides["discharge_temp"] = level

                    async def reached(want: bool = active) -> bool:
                        return (("chiller-1", rule_id) in agent.bank.open_episodes()) is want

                    await eventually(reached, within=10, what=f"episode {episode} {level}")

            async def drained() -> bool:
                return agent.outbox.count() == 0

            await eventually(drained, within=30, what="every event to be acked")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            central.terminate()  # type: ignore[attr-defined]
            central.wait(10)  # type: ignore[attr-defined]

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            seqs = conn.execute(select(EdgeEvent.seq).order_by(EdgeEvent.seq)).scalars().all()
            tickets = conn.execute(select(Ticket.occurrences, Ticket.fault_active)).all()
    finally:
        engine.dispose()
    assert seqs == list(range(1, 2 * EPISODES + 1))  # every event, once, none missing
    assert tickets == [(EPISODES, False)]  # one open ticket: six recurrences, last one cleared
    assert "SIGKILL" not in (tmp_path / "central2.log").read_text()
