"""Scale-out on the machine's Mosquitto and PostgreSQL: three central processes in one consumer
group (MQTT 5 shared subscriptions) split the edge's traffic; one is killed with SIGKILL
mid-stream. Every event is stored exactly once, none is lost, no ticket is duplicated, and
the survivors take the killed one's share (the edge's outbox resends what it never acked)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import pytest
from conftest import free_port
from sqlalchemy import select
from support import Processes, central_up, eventually, write_rules, write_site

from central.storage.db import make_engine, migrate
from central.storage.models import EdgeEvent, Ticket
from edge_agent.agent import EdgeAgent
from fieldloop.brokers import parse_broker_url
from fieldloop.detection import load_detection
from fieldloop.profiles import load_site
from fieldloop.topics import Topics
from simulators.modbus_server import ModbusSimulator, SimulatedDevice
from simulators.scenarios import chiller_normal

pytestmark = pytest.mark.integration

EPISODES = 8


async def test_three_centrals_split_the_traffic_and_survive_a_kill(
    processes: Processes, mosquitto: str, pg_url: str, topics: Topics, tmp_path: Path
) -> None:
    sim_port = free_port()
    ports = [free_port() for _ in range(3)]
    site = load_site(write_site(tmp_path, port=sim_port, poll_interval=0.05))
    rules = load_detection(write_rules(tmp_path, hold="0.2s"))
    setup = make_engine(pg_url)
    migrate(setup)  # once, before the processes start (they would also take turns at it)
    setup.dispose()
    procs = []
    for i, port in enumerate(ports):
        env = {
            "FIELDLOOP_CONSUMER_CLIENT_ID": f"central-{i}-{topics.root}",
            "FIELDLOOP_CONSUMER_GROUP": f"g-{topics.root}",
            "FIELDLOOP_RULES_ENGINE": "reference",
        }
        args = ["central", "--db", pg_url, "--broker", mosquitto, "--port", str(port),
                "--topic-root", topics.root]  # fmt: skip
        procs.append(processes.fieldloop(args, tmp_path / f"central{i}.log", env))
    try:
        for port in ports:
            await central_up(port)
        await asyncio.sleep(1.0)  # every process subscribed before the first event
        device = SimulatedDevice(site.profiles["chiller"], chiller_normal())
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
                        procs[0].send_signal(signal.SIGKILL)
                        procs[0].wait(10)
                    for level, active in ((100.0, True), (80.0, False)):
                        device.overrides["discharge_temp"] = level

                        async def reached(want: bool = active) -> bool:
                            return (("chiller-1", rule_id) in agent.bank.open_episodes()) is want

                        await eventually(reached, within=10, what=f"episode {episode} {level}")

                async def drained() -> bool:
                    return agent.outbox.count() == 0

                await eventually(drained, within=60, what="every event to be acked")
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait(15)

    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            seqs = conn.execute(select(EdgeEvent.seq).order_by(EdgeEvent.seq)).scalars().all()
            tickets = conn.execute(select(Ticket.occurrences, Ticket.fault_active)).all()
    finally:
        engine.dispose()
    assert seqs == list(range(1, 2 * EPISODES + 1))  # every event, once, none missing
    assert tickets == [(EPISODES, False)]  # one ticket: its recurrences, the last one cleared
    # the two survivors both took part after the kill
    survivors = [(tmp_path / f"central{i}.log").read_text() for i in (1, 2)]
    assert all("central consuming $share/" in log for log in survivors)
