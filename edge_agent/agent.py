"""The edge agent: wires collectors, detectors, the outbox and the uplink for one site."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.collectors.modbus import ModbusCollector, utcnow
from edge_agent.collectors.mqtt import MqttCollector
from edge_agent.deadletters import DeadLetterFile
from edge_agent.detectors import CommWatch, Detection, DetectorBank, StateError
from edge_agent.outbox import Outbox
from edge_agent.readings import Reading
from edge_agent.reporting import Reporter
from edge_agent.uplink import Uplink
from fieldloop.backoff import Backoff
from fieldloop.brokers import BrokerAddress, parse_broker_url
from fieldloop.detection import DetectionFile
from fieldloop.messages import COMM_RULE_ID, Ack, DeviceHealth
from fieldloop.profiles import Site
from fieldloop.tasks import stop_tasks
from fieldloop.topics import Topics

log = logging.getLogger("fieldloop.edge")

STATUS_FILE = "status.json"
# Telemetry is flushed in up to FLUSH_SLICES slices per telemetry_interval, each of at least
# SLICE_DEVICES devices: a small site flushes once (one fsync), a large one never all at once.
FLUSH_SLICES = 10
SLICE_DEVICES = 50


class ConfigMismatch(ValueError):
    """A detection rule names a metric its device profile does not have."""


def check_rules_against_site(rules: DetectionFile, site: Site) -> None:
    for rule in rules.rules:
        profile = site.profiles.get(rule.profile)
        if profile is None:
            continue  # a shared rule file covers device models this site does not have
        if rule.metric not in {r.name for r in profile.resources}:
            raise ConfigMismatch(
                f"detection rule {rule.id!r} watches {rule.metric!r}, which profile "
                f"{profile.name!r} does not have "
                f"(it has: {', '.join(r.name for r in profile.resources)})"
            )


class EdgeAgent:
    def __init__(
        self,
        site: Site,
        rules: DetectionFile,
        broker: BrokerAddress,
        data_dir: Path,
        *,
        topics: Topics | None = None,
        telemetry_interval: float = 1.0,
        resend_after: float = 10.0,
        window: int = 256,
        max_outbox_bytes: int = 1 << 30,
        status_interval: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
        on_ack: Callable[[Ack], None] | None = None,
        reconnect_max: float = 30.0,
    ) -> None:
        check_rules_against_site(rules, site)
        self.site = site
        self.clock = clock
        self.data_dir = Path(data_dir)
        self.telemetry_interval = telemetry_interval
        self.status_interval = status_interval
        self.outbox = Outbox(self.data_dir / f"outbox-{site.id}.sqlite", max_bytes=max_outbox_bytes)
        self.dead_letters = DeadLetterFile(self.data_dir / f"dead-letters-{site.id}.jsonl")
        devices = site.spec.devices
        open_eps = self.outbox.open_episodes()
        profiles, assets = {d.id: d.profile for d in devices}, {d.id: d.asset for d in devices}
        self.bank = DetectorBank(rules, profiles, assets)
        saved = self.outbox.load_detector_state()
        try:
            if saved is None:
                raise StateError("no saved detector state")
            self.bank.restore(saved)
        except StateError as exc:
            if saved is not None:
                log.warning("detector state in the outbox is unusable (%s); starting afresh", exc)
            # at least the episodes known to be open keep their clear coming
            self.bank = DetectorBank(rules, profiles, assets, open_episodes=open_eps)
        self.comm = {
            d.id: CommWatch(d.id, d.asset, lost=(d.id, COMM_RULE_ID) in open_eps) for d in devices
        }
        self.health = {d.id: DeviceHealth() for d in devices}
        self.reporters = {d.id: Reporter(d.report) for d in devices}
        self.latest: dict[str, dict[str, float]] = defaultdict(dict)
        self._samples: dict[str, list[Reading]] = defaultdict(list)
        self._asset = {d.id: d.asset for d in devices}
        self._profile = {d.id: d.profile for d in devices}  # sent with telemetry: its metrics
        self._location = {d.id: d.location or site.spec.location for d in devices}
        self.uplink = Uplink(
            site.id,
            broker,
            self.outbox,
            topics,
            resend_after=resend_after,
            window=window,
            on_ack=self._acked if on_ack is None else _chain(self._acked, on_ack),
            status=self.status_fields,
            reconnect_max=reconnect_max,
        )
        self.modbus = [
            ModbusCollector(
                dev,
                site.profile_of(dev),
                on_readings=self._on_readings,
                on_failure=self._failure_handler(dev.id),
                on_success=self._success_handler(dev.id),
                clock=clock,
            )
            for dev in devices
            if dev.modbus_tcp is not None
        ]
        mqtt_devices = [(d, site.profile_of(d)) for d in devices if d.mqtt is not None]
        device_broker = (
            parse_broker_url(site.spec.device_broker) if site.spec.device_broker else broker
        )
        self.mqtt = MqttCollector(
            mqtt_devices,
            device_broker,
            self.dead_letters,
            on_readings=self._on_readings,
            on_failure=lambda dev, t, why: self._failure_handler(dev)(t, why),
            on_success=lambda dev, t: self._success_handler(dev)(t),
            client_id=f"fieldloop-edge-{site.id}-devices",
            clock=clock,
        )

    async def run(self) -> None:
        log.info(
            "edge agent for site %s: %d Modbus and %d MQTT device(s); %d event(s) and %d "
            "telemetry batch(es) waiting in the outbox",
            self.site.id,
            len(self.modbus),
            len(self.mqtt.by_topic),
            self.outbox.count("event"),
            self.outbox.count("telemetry"),
        )
        loop = asyncio.get_running_loop()
        tasks = [
            loop.create_task(self.uplink.run(), name="uplink"),
            loop.create_task(self._flush_loop(), name="telemetry"),
            loop.create_task(self._every(self.status_interval, self.save_status), name="status"),
            loop.create_task(_supervised("mqtt devices", self.mqtt.run), name="mqtt-devices"),
        ] + [
            loop.create_task(_supervised(c.device.id, c.run), name=f"poll:{c.device.id}")
            for c in self.modbus
        ]
        try:
            # none of them ends by itself: a failure ends the agent, a stop request cancels it
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                t.result()
        finally:
            await stop_tasks(tasks)
            # a clean stop (SIGTERM, Ctrl-C) keeps what was read and where the detectors were
            await asyncio.shield(self._shutdown())

    async def _shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self.flush_telemetry()
        self.uplink.flush_acks()
        self.outbox.save_detector_state(self.bank.snapshot())
        self.save_status(online=False)
        self.outbox.close()
        log.info("edge agent for site %s stopped; nothing pending was lost", self.site.id)

    @staticmethod
    async def _every(seconds: float, job: Callable[[], Awaitable[None] | None]) -> None:
        while True:
            await asyncio.sleep(seconds)
            result = job()
            if result is not None:
                await result

    # -- readings -> detections and telemetry -------------------------------------------------

    def _on_readings(self, readings: list[Reading]) -> None:
        """One poll (or payload) of one device. Readings are kept as they are, as telemetry
        samples too: decoding already guarantees finite values and aware times, and this runs
        for every point (25,000 a second on a large site), so nothing is built per reading."""
        if not readings:
            return
        device = readings[0].device
        latest = self.latest[device]
        wants = self.reporters[device].wants
        samples = self._samples[device]
        watched = self.bank.watched(device)
        for r in readings:
            if r.quality == "good":
                latest[r.metric] = r.value
            if wants(r):
                samples.append(r)
            if r.metric in watched:
                detections = self.bank.observe(r)
                if detections:
                    self._emit(*detections)
        for note in self.bank.notices():
            log.info("%s", note)

    def _failure_handler(self, device: str) -> Callable[[datetime, str], None]:
        def failed(time: datetime, reason: str) -> None:
            h = self.health[device]
            h.polls += 1
            h.errors += 1
            h.last_poll, h.last_error = time, reason
            d = self.comm[device].failed(time, reason)
            if d is not None:
                h.comm = "lost"
                log.warning("%s stopped answering: %s", device, reason)
                self._emit(d, with_state=False)

        return failed

    def _success_handler(self, device: str) -> Callable[[datetime], None]:
        def answered(time: datetime) -> None:
            h = self.health[device]
            h.polls += 1
            h.last_poll = h.last_ok = time
            h.comm = "ok"
            d = self.comm[device].answered(time)
            if d is not None:
                log.info("%s answers again", device)
                self._emit(d, with_state=False)

        return answered

    def _emit(self, *detections: Detection, with_state: bool = True) -> None:
        """Store a reading's detections and the detectors' state that produced them in one
        transaction: after a crash either all of them are sent with that state, or none."""
        device = detections[0].device
        events = self.outbox.append_many(
            self.site.id,
            detections,
            dict(self.latest.get(device, {})),
            self._location[device],
            detector_state=self.bank.snapshot() if with_state else None,
        )
        for d, event in zip(detections, events, strict=True):
            log.info(
                "event %s %s on %s/%s (seq %d) stored in outbox, publishing",
                d.kind,
                d.rule_id,
                d.device,
                d.asset,
                event.seq,
            )
        self.uplink.notify()

    def _acked(self, ack: Ack) -> None:
        if ack.ticket_id is not None:
            log.info("central %s event %s -> ticket #%s", ack.result, ack.acked_id, ack.ticket_id)
        elif ack.rule_id is not None or ack.result == "rejected":
            log.info("central %s message %s %s", ack.result, ack.acked_id, ack.reason or "")

    async def _flush_loop(self) -> None:
        """Every device's telemetry leaves once per ``telemetry_interval``; on a large site in
        slices (a tenth of the devices every tenth of the interval), because encoding and
        storing hundreds of batches at once holds the event loop for tens of milliseconds, and
        every poll due meanwhile would start late."""
        devices = [d.id for d in self.site.spec.devices]
        n = max(1, min(FLUSH_SLICES, len(devices) // SLICE_DEVICES))
        slices = [devices[i::n] for i in range(n)]
        for k in itertools.cycle(range(n)):
            await asyncio.sleep(self.telemetry_interval / n)
            await self.flush_telemetry(slices[k])

    async def flush_telemetry(self, devices: Iterable[str] | None = None) -> None:
        """One telemetry batch per device (of ``devices``, default all) with readings since its
        last flush, all stored in one transaction (one fsync per flush on the gateway's flash,
        not one per device)."""
        if devices is None:
            taken, self._samples = self._samples, defaultdict(list)
        else:
            taken = {d: self._samples.pop(d) for d in devices if d in self._samples}
        batches = [(dev, self._asset[dev], items) for dev, items in taken.items() if items]
        if batches:
            self.outbox.append_telemetry(self.site.id, batches, self._profile)
            self.uplink.notify()

    # -- status -----------------------------------------------------------------------------

    def status_fields(self) -> dict[str, Any]:
        counters = self.outbox.counters()
        return {
            "devices": {k: v.model_copy() for k, v in self.health.items()},
            "outbox_messages": self.outbox.count(),
            "outbox_bytes": self.outbox.size_bytes,
            "dropped_telemetry_samples": counters.get("dropped_telemetry_samples", 0),
            "dead_letters": self.dead_letters.count,
        }

    def save_status(self, online: bool = True) -> None:
        """status.json in the data directory (what `fieldloop edge status` prints), written
        atomically; also a periodic save of the detectors' state when it changed."""
        if online and self.bank.dirty:
            self.outbox.save_detector_state(self.bank.snapshot())
        fields = self.status_fields()
        doc = {
            "site": self.site.id,
            "online": online,
            "time": datetime.now(UTC).isoformat(),
            "uplink_connected": self.uplink.connected.is_set(),
            **{k: v for k, v in fields.items() if k != "devices"},
            "devices": {k: v.model_dump(mode="json") for k, v in fields["devices"].items()},
        }
        tmp = self.data_dir / (STATUS_FILE + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.data_dir / STATUS_FILE)
        if online:
            self.uplink.refresh_status()


async def _supervised(name: str, job: Callable[[], Awaitable[None]]) -> None:
    """Restart a collector that fails unexpectedly, with backoff, instead of losing it."""
    backoff = Backoff(initial=1.0, cap=60.0)
    while True:
        try:
            await job()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed unexpectedly; restarting it", name)
            await asyncio.sleep(backoff.next_delay())


def _chain(*fns: Callable[[Ack], None]) -> Callable[[Ack], None]:
    def call(ack: Ack) -> None:
        for f in fns:
            f(ack)

    return call
