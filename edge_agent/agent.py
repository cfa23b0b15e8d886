"""The edge agent: wires collectors, detectors, the outbox and the uplink for one site."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from edge_agent.collectors.modbus import ModbusCollector, utcnow
from edge_agent.detectors import CommWatch, Detection, ThresholdDetector
from edge_agent.outbox import Outbox
from edge_agent.readings import Reading
from edge_agent.uplink import Uplink
from fieldloop.brokers import BrokerAddress
from fieldloop.detection import DetectionFile
from fieldloop.messages import COMM_RULE_ID, Ack, Sample, TelemetryBatch
from fieldloop.profiles import Site
from fieldloop.topics import Topics

log = logging.getLogger("fieldloop.edge")


class ConfigMismatch(ValueError):
    """A detection rule names a metric its device profile does not have."""


class EdgeAgent:
    def __init__(
        self,
        site: Site,
        rules: DetectionFile,
        broker: BrokerAddress,
        data_dir: Path,
        *,
        topics: Topics | None = None,
        telemetry_interval: float = 10.0,
        resend_after: float = 10.0,
        clock: Callable[[], datetime] = utcnow,
        on_ack: Callable[[Ack], None] | None = None,
    ) -> None:
        self.site = site
        self.clock = clock
        self.telemetry_interval = telemetry_interval
        self.outbox = Outbox(Path(data_dir) / f"outbox-{site.id}.sqlite")
        open_eps = self.outbox.open_episodes()
        self.detectors: dict[str, list[ThresholdDetector]] = defaultdict(list)
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
            active = {dev for dev, rid in open_eps if rid == rule.id}
            self.detectors[rule.profile].append(ThresholdDetector(rule, active))
        self.comm = {
            d.id: CommWatch(d.id, d.asset, lost=(d.id, COMM_RULE_ID) in open_eps)
            for d in site.spec.devices
        }
        self.latest: dict[str, dict[str, float]] = defaultdict(dict)
        self._samples: dict[str, list[Sample]] = defaultdict(list)
        self._telemetry_seq: dict[str, int] = defaultdict(int)
        self.uplink = Uplink(
            site.id,
            broker,
            self.outbox,
            topics,
            resend_after=resend_after,
            on_ack=self._acked if on_ack is None else _chain(self._acked, on_ack),
        )
        self.collectors = [
            ModbusCollector(
                dev,
                site.profile_of(dev),
                on_readings=self._on_readings,
                on_failure=self._failure_handler(dev.id),
                on_success=self._success_handler(dev.id),
                clock=clock,
            )
            for dev in site.spec.devices
        ]
        self._profile_of_device = {d.id: d.profile for d in site.spec.devices}
        self._location = {d.id: d.location or site.spec.location for d in site.spec.devices}

    async def run(self) -> None:
        log.info(
            "edge agent for site %s: %d device(s), %d detector(s), %d event(s) waiting in outbox",
            self.site.id,
            len(self.collectors),
            sum(len(v) for v in self.detectors.values()),
            self.outbox.count(),
        )
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.uplink.run(), name="uplink")
                tg.create_task(self._telemetry_loop(), name="telemetry")
                for c in self.collectors:
                    tg.create_task(c.run(), name=f"poll:{c.device.id}")
        finally:
            self.outbox.close()

    # -- readings -> detections -------------------------------------------------------------

    def _on_readings(self, readings: list[Reading]) -> None:
        for r in readings:
            if r.quality == "good":
                self.latest[r.device][r.metric] = r.value
            self._samples[r.device].append(
                Sample(metric=r.metric, time=r.time, value=r.value, quality=r.quality)
            )
            for det in self.detectors.get(self._profile_of_device[r.device], ()):
                was_pending = det.pending_since(r.device)
                d = det.observe(r)
                if d is not None:
                    self._emit(d)
                elif was_pending is None and det.pending_since(r.device) is not None:
                    rule = det.rule
                    log.info(
                        "%s %s = %.2f crossed %s (rule %s); raising if it holds for %gs",
                        r.device,
                        r.metric,
                        r.value,
                        f"> {rule.above}" if rule.above is not None else f"< {rule.below}",
                        rule.id,
                        rule.for_,
                    )

    def _failure_handler(self, device: str) -> Callable[[datetime, str], None]:
        def failed(time: datetime, reason: str) -> None:
            d = self.comm[device].failed(time, reason)
            if d is not None:
                log.warning("%s stopped answering: %s", device, reason)
                self._emit(d)

        return failed

    def _success_handler(self, device: str) -> Callable[[datetime], None]:
        def answered(time: datetime) -> None:
            d = self.comm[device].answered(time)
            if d is not None:
                log.info("%s answers again", device)
                self._emit(d)

        return answered

    def _emit(self, d: Detection) -> None:
        event = self.outbox.append(
            self.site.id, d, dict(self.latest.get(d.device, {})), self._location[d.device]
        )
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
        else:
            log.info("central %s event %s", ack.result, ack.acked_id)

    # -- telemetry --------------------------------------------------------------------------

    async def _telemetry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.telemetry_interval)
            await self.flush_telemetry()

    async def flush_telemetry(self) -> None:
        samples, self._samples = self._samples, defaultdict(list)
        for device, items in samples.items():
            if not items:
                continue
            self._telemetry_seq[device] += 1
            asset = next(d.asset for d in self.site.spec.devices if d.id == device)
            batch = TelemetryBatch(
                site=self.site.id,
                device=device,
                asset=asset,
                event_time=items[-1].time,
                seq=self._telemetry_seq[device],
                samples=items[-10_000:],
            )
            await self.uplink.publish_telemetry(batch)


def _chain(*fns: Callable[[Ack], None]) -> Callable[[Ack], None]:
    def call(ack: Ack) -> None:
        for f in fns:
            f(ack)

    return call
