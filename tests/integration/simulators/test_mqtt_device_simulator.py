"""Simulated MQTT devices on the real Mosquitto: the real `mosquitto_sub` receives an env sensor's
payloads, the edge's own PayloadMapper and MqttCollector map them (no dead letters), the
malformed and silent fault hooks act by scenario time, and the simulator reconnects after the
broker restarts, saying so once each way."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest
from conftest import PrivateMosquitto
from support import REPO, eventually

from edge_agent.collectors.mqtt import MqttCollector
from edge_agent.deadletters import DeadLetterFile
from edge_agent.payloads import PayloadMapper
from edge_agent.readings import Reading
from fieldloop.brokers import parse_broker_url
from fieldloop.profiles import DeviceInstance, load_profile
from fieldloop.topics import Topics
from simulators.modbus_server import SimulatedDevice
from simulators.mqtt_devices import MqttDevice, MqttDeviceSimulator
from simulators.scenarios import Scenario
from simulators.signals import Constant

pytestmark = pytest.mark.integration

#: exact in binary, so they survive JSON and the mapper unchanged
VALUES = {"temperature": 23.25, "humidity": 41.5, "co2": 612.0, "battery": 3.125}
PROFILE = load_profile(REPO / "device_profiles/env_sensor.yaml")


class FakeClock:
    """Scenario time moved by the test (the device's clock), not slept."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def env_sensor(
    topic: str,
    *,
    interval: float = 0.1,
    clock: Callable[[], float] | None = None,
    malformed: Callable[[float], bool] | None = None,
    silent: Callable[[float], bool] | None = None,
) -> MqttDevice:
    scenario = Scenario("constant", {k: Constant(v, jitter=0.0) for k, v in VALUES.items()})
    device = SimulatedDevice(PROFILE, scenario, seed=7, **({"clock": clock} if clock else {}))
    return MqttDevice("env-1", device, topic, interval, qos=1, malformed=malformed, silent=silent)


class Subscriber:
    """A real aiomqtt client collecting every payload on one topic."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.subscribed = asyncio.Event()

    async def run(self, broker: str, topic: str) -> None:
        address = parse_broker_url(broker)
        async with aiomqtt.Client(address.host, address.port) as client:
            await client.subscribe(topic, qos=1)
            self.subscribed.set()
            async for message in client.messages:
                self.payloads.append(bytes(message.payload))  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def subscribed(broker: str, topic: str) -> AsyncIterator[Subscriber]:
    sub = Subscriber()
    task = asyncio.create_task(sub.run(broker, topic))
    try:
        await asyncio.wait_for(sub.subscribed.wait(), 10)
        yield sub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def parses(payload: bytes) -> bool:
    try:
        json.loads(payload)
    except ValueError:
        return False
    return True


async def test_mosquitto_sub_receives_payloads_the_edge_maps(
    mosquitto: str, topics: Topics
) -> None:
    if shutil.which("mosquitto_sub") is None:
        pytest.fail("mosquitto_sub is not installed: apt-get install mosquitto-clients")
    topic = f"{topics.root}/devices/room1"
    async with MqttDeviceSimulator([env_sensor(topic)], parse_broker_url(mosquitto)):
        argv = [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            "1883",
            "-t",
            topic,
            "-C",
            "2",
            "-W",
            "10",
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, (argv, out, err)
    lines = out.decode().splitlines()
    assert len(lines) == 2, lines
    mapper = PayloadMapper(PROFILE)
    for line in lines:
        doc = json.loads(line)
        assert set(doc) == {"ts", *VALUES}
        assert {k: doc[k] for k in VALUES} == VALUES
        assert isinstance(doc["ts"], int) and doc["ts"] > 1_700_000_000
        now = datetime.now(UTC)
        readings = mapper.map(line.encode(), device="env-1", asset="ROOM-1", time=now)
        assert {r.metric: r.value for r in readings} == VALUES
        assert all(r.quality == "good" and r.device == "env-1" for r in readings)


async def test_edge_collector_maps_every_payload_without_dead_letters(
    mosquitto: str, topics: Topics, tmp_path: Path
) -> None:
    topic = f"{topics.root}/devices/room1"
    spec = DeviceInstance.model_validate(
        {"id": "env-1", "asset": "ROOM-1", "profile": "env_sensor", "mqtt": {"topic": topic},
         "poll_interval": 0.1}
    )  # fmt: skip
    readings: list[Reading] = []
    dead = DeadLetterFile(tmp_path / "dl.jsonl")
    collector = MqttCollector(
        [(spec, PROFILE)],
        parse_broker_url(mosquitto),
        dead,
        on_readings=readings.extend,
        on_failure=lambda *_: None,
        on_success=lambda *_: None,
        client_id=f"collector-{topics.root}",
    )
    task = asyncio.create_task(collector.run())
    try:
        await asyncio.wait_for(collector.connected.wait(), 10)
        sensor = MqttDevice.from_instance(spec, env_sensor(topic).device)
        async with MqttDeviceSimulator([sensor], parse_broker_url(mosquitto)):

            async def five_payloads() -> bool:
                return len(readings) >= 5 * len(VALUES)

            await eventually(five_payloads, within=10, what="five payloads mapped")
        assert dead.count == 0
        assert {(r.metric, r.value) for r in readings} == set(VALUES.items())
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_malformed_then_silent_by_scenario_time(mosquitto: str, topics: Topics) -> None:
    topic = f"{topics.root}/devices/room1"
    clock = FakeClock()
    sensor = env_sensor(
        topic, clock=clock, malformed=lambda t: 10 <= t < 20, silent=lambda t: 20 <= t < 30
    )
    async with (
        subscribed(mosquitto, topic) as sub,
        MqttDeviceSimulator([sensor], parse_broker_url(mosquitto)),
    ):

        async def received(test: Callable[[bytes], bool], what: str) -> None:
            start = len(sub.payloads)

            async def seen() -> bool:
                return any(test(p) for p in sub.payloads[start:])

            await eventually(seen, within=10, what=what)

        await received(parses, "a valid payload")
        clock.now = 15.0  # malformed
        await received(lambda p: not parses(p), "a malformed payload")
        await asyncio.sleep(0.3)  # one in flight as the fault began may still arrive
        assert not any(parses(p) for p in sub.payloads[-2:])

        clock.now = 25.0  # silent
        await asyncio.sleep(0.3)
        before, published = len(sub.payloads), sensor.published
        await asyncio.sleep(1.0)  # ten intervals
        assert len(sub.payloads) == before
        assert sensor.published == published

        clock.now = 35.0  # recovered
        await received(parses, "payloads again after the silence")


async def test_reconnects_after_the_broker_restarts(
    private_mosquitto: PrivateMosquitto, topics: Topics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fieldloop.simulator.mqtt")
    topic = f"{topics.root}/devices/room1"
    sensor = env_sensor(topic)
    async with MqttDeviceSimulator([sensor], parse_broker_url(private_mosquitto.url)) as sim:
        private_mosquitto.kill()

        async def disconnected() -> bool:
            return not sim.connected.is_set()

        await eventually(disconnected, within=10, what="the simulator to notice the broker left")
        await asyncio.sleep(1.5)  # several failed attempts, logged once
        private_mosquitto.start()
        async with subscribed(private_mosquitto.url, topic) as sub:

            async def payloads_again() -> bool:
                return any(parses(p) for p in sub.payloads)

            await eventually(payloads_again, within=15, what="payloads after the restart")
    messages = [r.getMessage() for r in caplog.records if r.name == "fieldloop.simulator.mqtt"]
    assert sum("unreachable" in m for m in messages) == 1, messages
    assert sum("reachable again" in m for m in messages) == 1, messages


async def test_an_unreachable_broker_fails_start_clearly(
    private_mosquitto: PrivateMosquitto,
) -> None:
    private_mosquitto.kill()
    sim = MqttDeviceSimulator(
        [env_sensor("x/room1")], parse_broker_url(private_mosquitto.url), connect_timeout=1.0
    )
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{private_mosquitto.port}"):
        await sim.start()
