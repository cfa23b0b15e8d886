"""MQTT device collector: subscribes to each MQTT device's topic on the site's device broker and
maps payloads with the device's profile. A payload that cannot be accepted goes to the
dead-letter file with the reason; the collector goes on. A device silent for three reporting
intervals (at least 10 s) counts as lost until it publishes again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import aiomqtt

from edge_agent.collectors.modbus import utcnow
from edge_agent.deadletters import DeadLetterFile
from edge_agent.payloads import PayloadMapper, PayloadRejected
from edge_agent.readings import Reading
from fieldloop.backoff import Backoff
from fieldloop.brokers import BrokerAddress, client_kwargs, connected
from fieldloop.profiles import DeviceInstance, DeviceProfile
from fieldloop.tasks import raise_if_cancelled

log = logging.getLogger("fieldloop.edge.mqtt")


@dataclass
class _Device:
    spec: DeviceInstance
    mapper: PayloadMapper
    last_seen: float | None = None
    reported_lost: bool = False


class MqttCollector:
    def __init__(
        self,
        devices: list[tuple[DeviceInstance, DeviceProfile]],
        broker: BrokerAddress,
        dead_letters: DeadLetterFile,
        *,
        on_readings: Callable[[list[Reading]], None],
        on_failure: Callable[[str, datetime, str], None],
        on_success: Callable[[str, datetime], None],
        client_id: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        mappers: dict[str, PayloadMapper] = {}
        self.by_topic: dict[str, _Device] = {}
        for spec, profile in devices:
            assert spec.mqtt is not None
            mapper = mappers.setdefault(profile.name, PayloadMapper(profile))
            self.by_topic[spec.mqtt.topic] = _Device(spec, mapper)
        self.broker = broker
        self.dead_letters = dead_letters
        self.on_readings = on_readings
        self.on_failure = on_failure
        self.on_success = on_success
        self.client_id = client_id
        self.clock = clock
        self.connected = asyncio.Event()

    async def run(self) -> None:
        if not self.by_topic:
            return
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._consume())
            tg.create_task(self._watchdog())

    async def _consume(self) -> None:
        backoff = Backoff()
        failing = False
        while True:
            try:
                async with connected(
                    aiomqtt.Client(
                        **client_kwargs(self.broker),  # type: ignore[arg-type]
                        identifier=self.client_id,
                        clean_session=True,  # device readings are live data, not a backlog
                    )
                ) as client:
                    for topic, dev in self.by_topic.items():
                        assert dev.spec.mqtt is not None
                        await client.subscribe(topic, qos=dev.spec.mqtt.qos)
                    self.connected.set()
                    backoff.reset()
                    failing = False
                    async for message in client.messages:
                        raise_if_cancelled()
                        self.handle(str(message.topic), bytes(message.payload))  # type: ignore[arg-type]
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                if not failing:
                    log.warning("device broker %s unreachable (%s); retrying", self.broker, exc)
                    failing = True
                await asyncio.sleep(backoff.next_delay())
                raise_if_cancelled()

    def handle(self, topic: str, payload: bytes) -> None:
        dev = self.by_topic.get(topic)
        time = self.clock()
        if dev is None:
            return
        try:
            readings = dev.mapper.map(payload, device=dev.spec.id, asset=dev.spec.asset, time=time)
        except PayloadRejected as exc:
            self.dead_letters.add(
                time=time, source="mqtt", device=dev.spec.id, topic=topic, reason=str(exc),
                payload=payload,
            )  # fmt: skip
            log.warning("%s: payload dead-lettered: %s", dev.spec.id, exc)
            return
        dev.last_seen = asyncio.get_running_loop().time()
        dev.reported_lost = False
        self.on_success(dev.spec.id, time)
        self.on_readings(readings)

    async def _watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            for dev in self.by_topic.values():
                limit = max(3 * dev.spec.poll_interval, 10.0)
                seen = dev.last_seen if dev.last_seen is not None else started
                if now - seen > limit and not dev.reported_lost:
                    dev.reported_lost = True
                    self.on_failure(
                        dev.spec.id, self.clock(), f"no payload on its topic for {limit:g} s"
                    )
