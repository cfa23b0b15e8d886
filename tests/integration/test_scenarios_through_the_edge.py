"""Shipped scenarios through the real edge agent, reconciled with the simulator's ground truth:
the meter that stops answering (then answers with exception 11) gives exactly one comm_lost and
one comm_restored, at the times the ground truth says, and no other device loses anything (the
MQTT sensor publishes all along); a site-wide power blip gives one of each per Modbus device (the
MQTT sensor's 20 s of silence, compressed, is shorter than its watchdog)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from conftest import REPO, free_port
from support import write_rules

from edge_agent.agent import EdgeAgent
from fieldloop.brokers import parse_broker_url
from fieldloop.detection import load_detection
from fieldloop.messages import Event
from fieldloop.profiles import load_site
from fieldloop.topics import Topics
from simulators.site import SiteSimulation

pytestmark = pytest.mark.integration

SPEED = 60.0  # scenario minutes pass in wall seconds


def plant_on_free_ports(tmp_path: Path, topics: Topics) -> Path:
    """deploy/sites/simulated-plant.yaml on this test's own ports and MQTT topic, polled every
    0.2 s."""
    text = (REPO / "deploy/sites/simulated-plant.yaml").read_text(encoding="utf-8")
    text = text.replace("topic: sim-plant/", f"topic: {topics.root}/")
    for port in ("15101", "15102"):
        text = text.replace(f"port: {port}", f"port: {free_port()}")
    text = re.sub(r"poll_interval: \d+s", "poll_interval: 200ms", text)
    text = text.replace(
        "profiles_dir: ../../device_profiles", f"profiles_dir: {REPO}/device_profiles"
    )
    text = text.replace("timeout: 1.0, retries: 1", "timeout: 0.3, retries: 0")
    path = tmp_path / "plant.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def run(scenario: str, seconds: float, mosquitto: str, topics: Topics, tmp_path: Path):
    site = load_site(plant_on_free_ports(tmp_path, topics))
    rules = load_detection(write_rules(tmp_path))
    truth = tmp_path / "truth.jsonl"
    agent = EdgeAgent(site, rules, parse_broker_url(mosquitto), tmp_path / "edge", topics=topics)
    async with SiteSimulation(site, scenario, speed=SPEED, truth=truth) as sim:
        task = asyncio.create_task(agent.run())
        try:
            await asyncio.sleep(seconds)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    with contextlib.closing(agent.outbox.__class__(agent.outbox.path)) as ob:
        events = [
            Event.model_validate_json(r.payload) for r in ob.pending(limit=10_000)
            if r.stream == "event"
        ]  # fmt: skip
    rows = [json.loads(x) for x in truth.read_text(encoding="utf-8").splitlines()]
    assert sim.started is not None
    return events, rows, sim.started


MODBUS = ["chiller-1", "compressor-1", "meter-main", "pump-1"]


def comm(events: list[Event]) -> list[tuple[str, str]]:
    """Communication episodes of the Modbus devices, in order."""
    return [(e.device, e.kind.value) for e in events
            if e.rule_id == "comm_lost" and e.device in MODBUS]  # fmt: skip


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


@pytest.mark.timeout(150)  # a scenario run in real time through the whole stack
async def test_meter_comm_loss_is_one_episode_where_the_truth_says(
    mosquitto: str, topics: Topics, tmp_path: Path
) -> None:
    events, truth, _ = await run("meter_comm_loss", 21.0, mosquitto, topics, tmp_path)
    assert [(r["device"], r["kind"]) for r in truth] == [
        ("meter-main", "comm_loss"),
        ("meter-main", "exception"),
    ]
    gone, back = at(truth[0]["start"]), at(truth[1]["end"])  # silent, then exception 11
    assert comm(events) == [("meter-main", "comm_lost"), ("meter-main", "comm_restored")]
    lost, restored = (
        e.event_time for e in events if e.rule_id == "comm_lost" and e.device == "meter-main"
    )
    # noticed at the first unanswered poll (0.2 s poll, 0.3 s timeout) and not before
    assert 0 <= (lost - gone).total_seconds() < 1.5
    assert 0 <= (restored - back).total_seconds() < 1.5


async def test_a_power_blip_loses_and_restores_every_device_once(
    mosquitto: str, topics: Topics, tmp_path: Path
) -> None:
    events, truth, _ = await run("power_blip", 5.0, mosquitto, topics, tmp_path)
    assert sorted(r["device"] for r in truth) == sorted([*MODBUS, "env-room1"])
    got = comm(events)
    for device in MODBUS:
        assert got.count((device, "comm_lost")) == 1, got
        assert got.count((device, "comm_restored")) == 1, got
    assert len(got) == 2 * len(MODBUS)
