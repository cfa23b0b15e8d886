"""The broker stopped for 30 s while the edge keeps detecting, then started again: every event
and every telemetry batch reaches central once; nothing lost, nothing duplicated."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from conftest import PrivateMosquitto, free_port
from sqlalchemy import func, select
from support import eventually, write_rules, write_site

from central.server import CentralServer
from central.settings import Settings
from central.storage.models import EdgeEvent, TelemetryBatchRow, TelemetrySample
from edge_agent.agent import EdgeAgent
from fieldloop.brokers import parse_broker_url
from fieldloop.detection import load_detection
from fieldloop.profiles import load_site
from fieldloop.topics import Topics
from simulators.modbus_server import ModbusSimulator, SimulatedDevice
from simulators.scenarios import chiller_normal

pytestmark = pytest.mark.integration

OUTAGE = 30.0


@pytest.mark.timeout(150)  # the outage itself lasts 30 s, then the backlog drains (up to 60 s)
async def test_nothing_lost_or_duplicated_across_a_30s_broker_outage(
    private_mosquitto: PrivateMosquitto, db_url: str, topics: Topics, tmp_path: Path
) -> None:
    broker = private_mosquitto
    sim_port = free_port()
    site = load_site(write_site(tmp_path, port=sim_port, poll_interval=0.1))
    rules = load_detection(write_rules(tmp_path, hold="0.3s"))
    rule_id = rules.rules[0].id
    device = SimulatedDevice(site.profiles["chiller"], chiller_normal())
    central = CentralServer(
        Settings(db_url=db_url, broker_url=broker.url, port=free_port(), topic_root=topics.root,
                 consumer_client_id=f"central-{topics.root}", broker_reconnect_max=2.0)
    )  # fmt: skip
    await central.start()
    agent = EdgeAgent(
        site, rules, parse_broker_url(broker.url), tmp_path / "edge", topics=topics,
        resend_after=2.0, reconnect_max=2.0,  # back within 2 s of the broker, not up to 30
    )  # fmt: skip

    async def episode(n: int) -> None:
        for level, active in ((100.0, True), (80.0, False)):
            device.overrides["discharge_temp"] = level

            async def reached(want: bool = active) -> bool:
                return (("chiller-1", rule_id) in agent.bank.open_episodes()) is want

            await eventually(reached, within=10, what=f"episode {n} at {level}")

    async with ModbusSimulator([device], "127.0.0.1", sim_port):
        task = asyncio.create_task(agent.run())
        try:
            await asyncio.wait_for(agent.uplink.connected.wait(), 10)
            await episode(1)
            broker.kill()
            down_at = time.monotonic()
            await episode(2)  # detected and stored while nobody can hear it
            await episode(3)
            assert agent.outbox.count("event") >= 4
            await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
            broker.start()

            async def drained() -> bool:
                return agent.outbox.count() == 0

            await eventually(drained, within=60, what="the outbox to drain after the outage")
            await agent.flush_telemetry()
            await eventually(drained, within=20, what="the last telemetry to be acked")
            sent_batches = set(range(1, _telemetry_seq(agent) + 1))
            assert agent.outbox.counters().get("dropped_telemetry_samples", 0) == 0
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await central.stop()

    from central.storage.db import make_engine

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            seqs = conn.execute(select(EdgeEvent.seq).order_by(EdgeEvent.seq)).scalars().all()
            batch_seqs = set(conn.execute(select(TelemetryBatchRow.seq)).scalars())
            stored = conn.execute(select(func.sum(TelemetryBatchRow.samples))).scalar_one()
            rows = conn.execute(select(func.count()).select_from(TelemetrySample)).scalar_one()
    finally:
        engine.dispose()
    assert seqs == list(range(1, 7))  # three episodes: open and clear each, once, in order
    assert batch_seqs == sent_batches  # every telemetry batch the edge made, none twice
    assert stored == rows


def _telemetry_seq(agent: EdgeAgent) -> int:
    row = agent.outbox._db.execute(
        "SELECT seq FROM device_seq WHERE device = 'chiller-1' AND stream = 'telemetry'"
    ).fetchone()
    return row[0] if row else 0
