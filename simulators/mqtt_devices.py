"""Simulated MQTT devices: JSON payloads built from a device profile and a scenario, published to a
real broker, each device on its own schedule, all through one client.

A payload holds each resource at its JSON path (``$.temperature``, ``$.env.t``), with the value the
scenario's signal gives at the device's scenario time, so the edge's ``PayloadMapper`` reading the
same paths finds exactly those values. A ``ts`` member (epoch seconds) is added when the profile
lists ``ts`` in ``ignore_fields``, as real sensors send one. Two fault hooks, functions of scenario
time, let a scenario break a device: ``malformed`` (truncated JSON is published instead) and
``silent`` (nothing is published: communication loss).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from fieldloop.backoff import Backoff
from fieldloop.brokers import BrokerAddress, client_kwargs
from fieldloop.jsonpath import parse as parse_path
from fieldloop.profiles import DeviceInstance, DeviceProfile
from fieldloop.registers import RawType, to_raw
from fieldloop.tasks import raise_if_cancelled, stop_tasks
from simulators.modbus_server import SimulatedDevice

log = logging.getLogger("fieldloop.simulator.mqtt")

#: a scenario-driven fault: scenario time (s) -> whether the fault is active now
FaultHook = Callable[[float], bool]


class PayloadBuilder:
    """Builds one MQTT profile's payloads (pure: values in, JSON document out).

    Only member paths can be built (``$.a``, ``$.a.b``, ``$['a b']``): an index step such as
    ``$.values[0]`` says nothing about the rest of the array, so it is refused, as are two paths
    where one needs a number and the other an object at the same place."""

    def __init__(self, profile: DeviceProfile) -> None:
        if profile.protocol != "mqtt":
            raise ValueError(
                f"profile {profile.name!r} is a {profile.protocol} profile; an MQTT device "
                "needs a profile with protocol: mqtt"
            )
        self.profile = profile
        self._steps: dict[str, tuple[str, ...]] = {}
        leaves: dict[tuple[str, ...], str] = {}  # members holding a value -> the path
        objects: dict[tuple[str, ...], str] = {}  # members holding an object -> a path needing it
        for r in profile.resources:
            assert r.path is not None  # an mqtt profile's resources all have a path
            steps = parse_path(r.path).steps
            if not all(isinstance(s, str) for s in steps):
                raise ValueError(
                    f"resource {r.name!r}: the simulator cannot build a payload for JSON path "
                    f"{r.path!r}; it builds member paths only, like $.temperature or $.env.t"
                )
            members = tuple(str(s) for s in steps)
            parents = [members[:i] for i in range(1, len(members))]
            other = next((leaves[p] for p in parents if p in leaves), None)
            other = other or leaves.get(members) or objects.get(members)
            if other is not None:
                raise ValueError(
                    f"resource {r.name!r}: JSON path {r.path!r} clashes with {other!r} (both "
                    "need the same member, as a value or as an object); give them separate "
                    "members"
                )
            for p in parents:
                objects.setdefault(p, r.path)
            leaves[members] = r.path
            self._steps[r.name] = members
        # a ts member (epoch seconds) as real sensors send, unless a resource already owns it
        self.with_ts = "ts" in profile.ignore_fields and not any(m[0] == "ts" for m in leaves)

    def build(self, values: Mapping[str, float], *, ts: float | None = None) -> dict[str, Any]:
        """The payload for ``values`` (engineering units by resource name). A resource without a
        value, or whose value is not finite, is left out (devices send partial payloads)."""
        doc: dict[str, Any] = {}
        if self.with_ts and ts is not None:
            doc["ts"] = int(ts)
        for r in self.profile.resources:
            value = values.get(r.name)
            if value is None or not math.isfinite(value):
                continue
            raw: bool | int | float
            if r.type is RawType.bool:
                raw = value >= 0.5  # a Step(0, 1) signal switches it
            else:
                raw = to_raw(value, r.scale, r.offset)
                if r.type is RawType.int64:
                    raw = round(raw)
            *parents, last = self._steps[r.name]
            node = doc
            for step in parents:
                node = node.setdefault(step, {})
            node[last] = raw
        return doc


def encode(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def truncate(payload: bytes) -> bytes:
    """A malformed payload: the first half of a JSON object, which is never valid JSON."""
    return payload[: max(1, len(payload) // 2)]


@dataclass
class MqttDevice:
    """One simulated MQTT device: what it publishes, where and how often, and its fault hooks."""

    id: str
    device: SimulatedDevice
    topic: str
    interval: float = 1.0
    qos: int = 1
    #: scenario time -> publish truncated JSON instead of the payload
    malformed: FaultHook | None = None
    #: scenario time -> publish nothing (communication loss)
    silent: FaultHook | None = None
    published: int = field(default=0, init=False)
    builder: PayloadBuilder = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise ValueError(f"device {self.id!r}: interval must be > 0 s, got {self.interval}")
        if self.qos not in (0, 1, 2):
            raise ValueError(f"device {self.id!r}: qos must be 0, 1 or 2, got {self.qos}")
        if not self.topic or "+" in self.topic or "#" in self.topic:
            raise ValueError(
                f"device {self.id!r}: topic {self.topic!r} must be non-empty and without "
                "wildcards (+, #)"
            )
        self.builder = PayloadBuilder(self.device.profile)

    @classmethod
    def from_instance(
        cls, spec: DeviceInstance, device: SimulatedDevice, **hooks: Any
    ) -> MqttDevice:
        """A device of a site file: its topic and qos from ``mqtt``, its interval from
        ``poll_interval``."""
        if spec.mqtt is None:
            raise ValueError(f"device {spec.id!r} has no mqtt section; it is not an MQTT device")
        return cls(spec.id, device, spec.mqtt.topic, spec.poll_interval, spec.mqtt.qos, **hooks)

    def payload(self, t: float, wall: float) -> bytes | None:
        """What the device publishes at scenario time ``t`` (wall clock ``wall``, for ``ts``):
        the payload, truncated JSON while ``malformed``, or None while ``silent``."""
        if self.silent is not None and self.silent(t):
            return None
        values = {r.name: self.device.value(r, t) for r in self.device.profile.resources}
        data = encode(self.builder.build(values, ts=wall))
        if self.malformed is not None and self.malformed(t):
            return truncate(data)
        return data


class MqttDeviceSimulator:
    """Publishes the payloads of several simulated MQTT devices through one client, reconnecting
    with backoff if the broker goes away."""

    def __init__(
        self,
        devices: list[MqttDevice],
        broker: BrokerAddress,
        *,
        client_id: str | None = None,
        connect_timeout: float = 10.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not devices:
            raise ValueError("an MQTT simulator needs at least one device")
        ids = [d.id for d in devices]
        if len(set(ids)) != len(ids):
            raise ValueError(f"device ids must differ, got {ids}")
        topics = [d.topic for d in devices]
        if len(set(topics)) != len(topics):
            raise ValueError(f"each device needs a topic of its own, got {topics}")
        self.devices = devices
        self.broker = broker
        self.client_id = client_id or f"fieldloop-sim-{uuid.uuid4().hex[:8]}"
        self.connect_timeout = connect_timeout
        self.wall_clock = wall_clock
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and start publishing; ConnectionError if the broker is not reachable within
        ``connect_timeout`` seconds (later losses are retried)."""
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name=f"mqtt-sim:{self.client_id}")
        connected = asyncio.create_task(self.connected.wait())
        await asyncio.wait(
            {self._task, connected},
            timeout=self.connect_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        await stop_tasks([connected])
        if self._task.done():  # not a connection problem (those are retried): a bug; raise it
            task, self._task = self._task, None
            task.result()
        if not self.connected.is_set():
            await self.stop()
            raise ConnectionError(
                f"the MQTT simulator could not connect to {self.broker} within "
                f"{self.connect_timeout:g} s; is the broker running, and is the address right?"
            )
        log.info(
            "simulator: %s publishing to %s",
            ", ".join(f"{d.id} on {d.topic} every {d.interval:g} s" for d in self.devices),
            self.broker,
        )

    async def stop(self) -> None:
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None
            self.connected.clear()

    async def __aenter__(self) -> MqttDeviceSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = dict.fromkeys(range(len(self.devices)), loop.time())
        backoff = Backoff()
        failing = False
        while True:
            client = aiomqtt.Client(
                **client_kwargs(self.broker),  # type: ignore[arg-type]
                identifier=self.client_id,
                timeout=5.0,
            )
            try:
                async with client:
                    self.connected.set()
                    backoff.reset()
                    if failing:
                        log.info("simulator: broker %s reachable again", self.broker)
                        failing = False
                    await self._publish_forever(client, due)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                _consume_disconnect_error(client)
                if not failing:
                    log.warning("simulator: broker %s unreachable (%s); retrying", self.broker, exc)
                    failing = True
                await asyncio.sleep(backoff.next_delay())
                raise_if_cancelled()

    async def _publish_forever(self, client: aiomqtt.Client, due: dict[int, float]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            raise_if_cancelled()
            i = min(due, key=due.__getitem__)
            delay = due[i] - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            dev = self.devices[i]
            payload = dev.payload(dev.device.scenario_time(), self.wall_clock())
            if payload is not None:
                await client.publish(dev.topic, payload, qos=dev.qos)
                dev.published += 1
            # the next tick of its own schedule; ticks missed while disconnected are skipped
            now = loop.time()
            due[i] += dev.interval
            if due[i] < now:
                due[i] = now + dev.interval


def _consume_disconnect_error(client: aiomqtt.Client) -> None:
    """aiomqtt 2.x keeps a lost connection's error in a future nobody reads once ``__aexit__``
    returns early, and asyncio then logs "Future exception was never retrieved" with a traceback
    at garbage collection: noise after a failure this module already logged once."""
    fut = getattr(client, "_disconnected", None)
    if isinstance(fut, asyncio.Future) and fut.done() and not fut.cancelled():
        fut.exception()
