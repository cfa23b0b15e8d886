"""MQTT devices on the real Mosquitto: payloads mapped by the profile, bad payloads to the
dead-letter file with the reason while the collector goes on, a silent device reported once."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiomqtt
import pytest
from support import REPO, eventually

from edge_agent.collectors.mqtt import MqttCollector
from edge_agent.deadletters import DeadLetterFile
from edge_agent.readings import Reading
from fieldloop.brokers import parse_broker_url
from fieldloop.profiles import DeviceInstance, load_profile
from fieldloop.topics import Topics

pytestmark = pytest.mark.integration


async def test_payloads_map_and_bad_ones_are_dead_lettered(
    mosquitto: str, topics: Topics, tmp_path: Path
) -> None:
    profile = load_profile(REPO / "device_profiles/env_sensor.yaml")
    topic = f"{topics.root}/devices/room1"
    device = DeviceInstance.model_validate(
        {"id": "env-1", "asset": "ROOM-1", "profile": "env_sensor", "mqtt": {"topic": topic},
         "poll_interval": 1}
    )  # fmt: skip
    readings: list[Reading] = []
    failures: list[tuple[str, str]] = []
    successes: list[str] = []
    dead = DeadLetterFile(tmp_path / "dl.jsonl")
    collector = MqttCollector(
        [(device, profile)],
        parse_broker_url(mosquitto),
        dead,
        on_readings=readings.extend,
        on_failure=lambda dev, _t, why: failures.append((dev, why)),
        on_success=lambda dev, _t: successes.append(dev),
        client_id=f"collector-{topics.root}",
    )
    task = asyncio.create_task(collector.run())
    try:
        await asyncio.wait_for(collector.connected.wait(), 10)
        async with aiomqtt.Client("127.0.0.1", 1883) as device_side:
            for payload in (
                b'{"ts": 1, "temperature": 22.5, "humidity": 40}',
                b"{broken",
                b'{"temperature": NaN}',
                b'{"temperature": 21, "pressure": 1013}',
                b'{"co2": 700}',
            ):
                await device_side.publish(topic, payload, qos=1)

        async def all_seen() -> bool:
            return len(readings) == 3 and dead.count == 3

        await eventually(all_seen, within=10, what="3 readings and 3 dead letters")
        assert [(r.metric, r.value) for r in readings] == [
            ("temperature", 22.5), ("humidity", 40.0), ("co2", 700.0)
        ]  # fmt: skip
        assert successes == ["env-1", "env-1"]
        reasons = [r["reason"] for r in dead.read()]
        assert reasons[0].startswith("invalid JSON")
        assert "NaN/Infinity refused" in reasons[1]
        assert "unknown field(s) 'pressure'" in reasons[2]
        assert all(r["topic"] == topic and r["device"] == "env-1" for r in dead.read())

        # silence: reported lost once, not once a second
        async def lost() -> bool:
            return bool(failures)

        await eventually(lost, within=15, what="the silent device to be reported")
        await asyncio.sleep(2.5)
        assert len(failures) == 1 and failures[0][0] == "env-1"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
