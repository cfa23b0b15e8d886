"""Detectors: pure state machines over readings, evaluated on event time (the reading's edge-clock
time), so replaying the same readings gives the same events. No I/O, no clock reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from edge_agent.readings import Reading
from fieldloop.detection import ThresholdRule
from fieldloop.messages import COMM_RULE_ID, EventKind, Severity


@dataclass(frozen=True)
class Detection:
    kind: EventKind
    rule_id: str
    title: str
    severity: Severity
    device: str
    asset: str
    time: datetime
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None


@dataclass
class _EpisodeState:
    pending_since: datetime | None = None
    active: bool = False


class ThresholdDetector:
    """Opens a fault when the metric stays beyond the threshold for the rule's duration; clears it
    when the metric crosses the clear level (hysteresis). One open and one clear per episode."""

    def __init__(self, rule: ThresholdRule, active_devices: set[str] | None = None) -> None:
        self.rule = rule
        self._state: dict[str, _EpisodeState] = {
            d: _EpisodeState(active=True) for d in (active_devices or ())
        }

    def is_active(self, device: str) -> bool:
        s = self._state.get(device)
        return bool(s and s.active)

    def pending_since(self, device: str) -> datetime | None:
        s = self._state.get(device)
        return s.pending_since if s else None

    def _breached(self, v: float) -> bool:
        r = self.rule
        return v > r.above if r.above is not None else v < r.below  # type: ignore[operator]

    def _cleared(self, v: float) -> bool:
        r = self.rule
        if r.above is not None:
            level = r.clear_below if r.clear_below is not None else r.above
            return v < level
        level = r.clear_above if r.clear_above is not None else r.below
        return v > level  # type: ignore[operator]

    def observe(self, reading: Reading) -> Detection | None:
        r = self.rule
        if reading.metric != r.metric or reading.quality != "good":
            return None  # implausible values say the sensor is broken, not the machine
        s = self._state.setdefault(reading.device, _EpisodeState())
        v = reading.value
        if s.active:
            if self._cleared(v):
                s.active, s.pending_since = False, None
                return self._detection(EventKind.fault_cleared, reading)
            return None
        if not self._breached(v):
            s.pending_since = None
            return None
        if s.pending_since is None or reading.time < s.pending_since:
            s.pending_since = reading.time
        if (reading.time - s.pending_since).total_seconds() >= r.for_:
            s.active, s.pending_since = True, None
            return self._detection(EventKind.fault_opened, reading)
        return None

    def _detection(self, kind: EventKind, reading: Reading) -> Detection:
        r = self.rule
        return Detection(
            kind=kind,
            rule_id=r.id,
            title=r.title,
            severity=r.severity,
            device=reading.device,
            asset=reading.asset,
            time=reading.time,
            metric=r.metric,
            value=reading.value,
            threshold=r.threshold,
        )


class CommWatch:
    """One comm-lost event when a device stops answering, one comm-restored when it answers again.
    A device that has never answered since start counts as lost at its first failure."""

    def __init__(self, device: str, asset: str, lost: bool = False) -> None:
        self.device = device
        self.asset = asset
        self.lost = lost
        self._seen_ok = False

    def failed(self, time: datetime, reason: str) -> Detection | None:
        if self.lost:
            return None
        self.lost = True
        return Detection(
            EventKind.comm_lost,
            COMM_RULE_ID,
            f"Communication lost with {self.device}: {reason}"[:200],
            Severity.major,
            self.device,
            self.asset,
            time,
        )

    def answered(self, time: datetime) -> Detection | None:
        self._seen_ok = True
        if not self.lost:
            return None
        self.lost = False
        return Detection(
            EventKind.comm_restored,
            COMM_RULE_ID,
            f"Communication restored with {self.device}",
            Severity.info,
            self.device,
            self.asset,
            time,
        )
