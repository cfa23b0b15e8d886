"""The edge agent killed with SIGKILL at several points while faults come and go, restarted each
time: every event its detectors emitted reaches central exactly once, reconciled against the
simulator's ground truth (when the discharge temperature really was over the threshold)."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import free_port
from sqlalchemy import select
from support import REPO, Processes, eventually, outbox_rows, write_rules, write_site

from central.server import CentralServer
from central.settings import Settings
from central.storage.models import EdgeEvent
from fieldloop.profiles import load_profile
from fieldloop.topics import Topics
from simulators.modbus_server import ModbusSimulator, SimulatedDevice
from simulators.scenarios import chiller_overheat

pytestmark = pytest.mark.integration

PERIOD, EPISODES = 3.0, 8
KILLS_AT = (5.1, 11.7, 17.3)  # seconds into the run, inside and between episodes
DOWN_FOR = 1.0
STARTUP = 2.5  # a restarted agent is polling again within this


@pytest.mark.timeout(150)  # overheat episodes in real time, the edge killed and restarted
async def test_every_emitted_event_arrives_once_across_sigkills(
    processes: Processes, mosquitto: str, sqlite_url: str, topics: Topics, tmp_path: Path
) -> None:
    sim_port = free_port()
    site = write_site(tmp_path, port=sim_port, poll_interval=0.05)
    rules = write_rules(tmp_path, hold="0.3s")
    data = tmp_path / "edge"
    args = ["edge", "--site", str(site), "--rules", str(rules), "--broker", mosquitto,
            "--data-dir", str(data), "--topic-root", topics.root]  # fmt: skip
    scenario = chiller_overheat(start=0.3, ramp=0.4, hold=1.0, recover=0.4, period=PERIOD)
    drift = scenario.signals["discharge_temp"]
    up, down = drift.crossing_times(95.0)  # type: ignore[attr-defined]
    central = CentralServer(
        Settings(db_url=sqlite_url, broker_url=mosquitto, port=free_port(),
                 topic_root=topics.root, consumer_client_id=f"central-{topics.root}")
    )  # fmt: skip
    await central.start()
    device = SimulatedDevice(load_profile(REPO / "device_profiles/chiller.yaml"), scenario)
    t0_wall = datetime.now(UTC)
    t0 = time.monotonic()
    uptime: list[tuple[float, float]] = []  # (polling from, killed at), run seconds
    try:
        async with ModbusSimulator([device], "127.0.0.1", sim_port):
            device.started_at = device.clock()  # scenario time 0 == t0
            edge = processes.fieldloop(args, tmp_path / "edge.log")
            started = 0.0
            for kill_at in KILLS_AT:
                await asyncio.sleep(kill_at - (time.monotonic() - t0))
                edge.send_signal(signal.SIGKILL)
                edge.wait(10)
                uptime.append((started + STARTUP, time.monotonic() - t0))
                await asyncio.sleep(DOWN_FOR)
                started = time.monotonic() - t0
                edge = processes.fieldloop(args, tmp_path / "edge.log")
            await asyncio.sleep(PERIOD * EPISODES - (time.monotonic() - t0))
            try:

                async def drained() -> bool:
                    return outbox_rows(data / "outbox-test-site.sqlite", "event") == 0

                await eventually(drained, within=30, what="every stored event to be acked")
            finally:
                edge.send_signal(signal.SIGTERM)  # a clean stop at the end
                assert edge.wait(20) == 0
            uptime.append((started + STARTUP, time.monotonic() - t0))
        with central.app.state.sessions() as s:
            events = s.execute(select(EdgeEvent).order_by(EdgeEvent.seq)).scalars().all()
    finally:
        await central.stop()

    fault_events = [e for e in events if e.rule_id == "chiller.discharge_temp.high"]
    comm_events = [e for e in events if e.rule_id == "comm_lost"]
    # 1. exactly once, nothing missing: the per-device sequence has no gap and no repeat
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert not comm_events  # the device itself never went away
    # 2. one open and one clear per episode, in order
    kinds = [e.kind for e in fault_events]
    assert kinds[::2] == ["fault_opened"] * len(kinds[::2])
    assert kinds[1::2] == ["fault_cleared"] * len(kinds[1::2])
    # 3. ground truth: every opening happened while the value really was over 95 degC ...
    at = lambda seconds: t0_wall + timedelta(seconds=seconds)  # noqa: E731
    windows = [(at(k * PERIOD + up), at(k * PERIOD + down)) for k in range(EPISODES)]
    margin = timedelta(seconds=0.5)
    opened = [e.event_time for e in fault_events if e.kind == "fault_opened"]
    for t in opened:
        assert any(a - margin <= t <= b + margin for a, b in windows), t
    # ... and every episode that an agent watched from start to end was raised exactly once
    watched = [
        (a, b) for k, (a, b) in enumerate(windows)
        if any(s <= k * PERIOD + up - 0.2 and k * PERIOD + down + 0.5 <= e for s, e in uptime)
    ]  # fmt: skip
    print(f"{len(events)} events, {len(opened)} openings, {len(watched)} fully watched episodes")
    assert len(watched) >= 3
    for a, b in watched:
        assert sum(a - margin <= t <= b + margin for t in opened) == 1, (a, b)
