"""Detectors: pure state machines over readings, evaluated on event time (the reading's edge-clock
time), so replaying the same readings gives the same events. No I/O, no clock reads.

A ``DetectorBank`` runs every rule of rules/detection.yaml for every device whose profile the rule
names. Each (device, rule) has two layers of state:

* the **condition**, which the rule type decides (threshold with duration and hysteresis, rate of
  change over a window, stuck value, implausible value), and
* the **episode**, which follows the condition and turns its changes into events: one open
  episode at a time; after a clear, ``cooldown`` holds back a new opening (if the condition
  still holds when the cooldown is over, the next reading opens it); and a (device, rule) that
  made more than ``flapping.transitions`` opens/clears within ``flapping.window`` opens its next
  episode as one ``flapping`` event instead, then stays quiet until the condition has not
  changed for the window: then ``fault_cleared`` if it settled clear, nothing if it settled in
  fault (the episode stays open; a later clear closes it).

Counter rules have no episodes: each due point passed raises one ``maintenance_due``.

Times are kept as integer microseconds since 1970-01-01 UTC, so durations compare exactly and
the whole state snapshots to plain JSON. Readings must carry timezone-aware times.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from edge_agent.readings import Reading
from fieldloop.detection import (
    AnyRule,
    CounterRule,
    DetectionFile,
    ImplausibleRule,
    RateOfChangeRule,
    StuckRule,
    ThresholdRule,
)
from fieldloop.messages import COMM_RULE_ID, EventKind, Severity

STATE_VERSION = 1
MAX_NOTICES = 1000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_INF = math.inf
_NOTHING: Mapping[str, object] = {}


def _us(t: datetime) -> int:
    return (t - _EPOCH) // _ONE_US


def _seconds_to_us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _iso(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).isoformat()


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


class StateError(ValueError):
    """The saved detector state cannot be read (another version, or damaged). The agent can
    start without it: open episodes are then taken from the outbox, timers start afresh."""


class _Context:
    """What every detector of one bank shares: the dirty flag and the notices not yet drained."""

    __slots__ = ("dirty", "dropped", "notes")

    def __init__(self) -> None:
        self.dirty = False
        self.notes: deque[str] = deque(maxlen=MAX_NOTICES)
        self.dropped = 0

    def note(self, text: str) -> None:
        if len(self.notes) == MAX_NOTICES:
            self.dropped += 1
        self.notes.append(text)

    def drain(self) -> list[str]:
        out = list(self.notes)
        if self.dropped:
            out.insert(0, f"({self.dropped} earlier notice(s) dropped: nobody read them)")
        self.notes.clear()
        self.dropped = 0
        return out


# ---------------------------------------------------------------------------------- states


class _Episode:
    __slots__ = ("cond", "cooldown_until", "flips", "open", "quiet", "stable_since")

    def __init__(self, flapping: bool) -> None:
        self.cond = False  # the rule's condition holds (what the episode follows)
        self.open = False  # an opening event was emitted and no clear yet
        self.cooldown_until: int | None = None
        self.flips: deque[int] | None = deque() if flapping else None  # episode transitions
        self.quiet = False  # flapping: events held back until the condition settles
        self.stable_since = 0  # while quiet: when the condition last changed


class _PendingState(_Episode):
    __slots__ = ("pending",)

    def __init__(self, flapping: bool) -> None:
        super().__init__(flapping)
        self.pending: int | None = None  # when the breach began, while waiting out 'for'


class _StuckState(_Episode):
    __slots__ = ("ref_t", "ref_v")

    def __init__(self, flapping: bool) -> None:
        super().__init__(flapping)
        self.ref_v = 0.0  # the value the metric has stayed near...
        self.ref_t: int | None = None  # ...since this time


class _RateState(_Episode):
    __slots__ = ("window",)

    def __init__(self, flapping: bool) -> None:
        super().__init__(flapping)
        self.window: deque[tuple[int, float]] = deque()


class _CounterState:
    __slots__ = ("base", "next_due", "prev")

    def __init__(self) -> None:
        self.prev: float | None = None  # last counter reading
        self.base = 0.0  # total counted before the last reset
        self.next_due = _INF


# --------------------------------------------------------------------------- (de)serialising


def _check(value: Any, kind: type, what: str) -> Any:
    """``value`` if it is of ``kind`` (a float may be written as an int; a bool is no number)."""
    ok = isinstance(value, int | float) if kind is float else isinstance(value, kind)
    if not ok or (isinstance(value, bool) and kind is not bool):
        raise StateError(f"{what}: expected {kind.__name__}, got {value!r}")
    return float(value) if kind is float else value


def _field(d: dict[str, Any], key: str, kind: type, none: bool = False) -> Any:
    value = d.get(key)
    return None if value is None and none else _check(value, kind, key)


# ---------------------------------------------------------------------------------- engines


class _Engine(ABC):
    """One rule over every device it applies to; ``states`` is keyed by device."""

    episodic: ClassVar[bool] = True

    def __init__(self, rule: AnyRule, ctx: _Context) -> None:
        self.rule = rule
        self.ctx = ctx
        self.states: dict[str, Any] = {}
        self.fingerprint = json.dumps(
            rule.model_dump(
                mode="json", exclude={"id", "title", "severity", "cooldown", "flapping"}
            ),
            sort_keys=True,
        )

    @abstractmethod
    def observe(self, r: Reading, t: int, asset: str, out: list[Detection]) -> None:
        """Follow one reading (``t``: its time in microseconds); append what it causes to
        ``out``."""

    @abstractmethod
    def dump(self, s: Any) -> dict[str, Any]:
        """A device's state as JSON-serialisable data, for ``load`` after a restart."""

    @abstractmethod
    def load(self, d: dict[str, Any], same_rule: bool) -> Any:
        """A device's state from ``dump``; with ``same_rule`` False (the rule's condition changed
        since) only what does not depend on it: the episode, a counter's total."""

    def seed_open(self, device: str) -> None:
        """Mark the device's episode open (known from the outbox, no saved state). Only
        episodic engines have one; the bank calls this for them alone."""
        return None

    def is_open(self, device: str) -> bool:
        return False

    def _detection(
        self,
        kind: EventKind,
        r: Reading,
        asset: str,
        value: float | None,
        threshold: float | None,
        title: str | None = None,
    ) -> Detection:
        rule = self.rule
        return Detection(
            kind,
            rule.id,
            title or rule.title,
            rule.severity,
            r.device,
            asset,
            r.time,
            rule.metric,
            value,
            threshold,
        )


class _EpisodeEngine(_Engine):
    """The episode layer: follows the condition, with cooldown and flapping suppression."""

    state_class: ClassVar[type[_Episode]] = _Episode
    rule: ThresholdRule | RateOfChangeRule | StuckRule | ImplausibleRule

    def __init__(self, rule: AnyRule, ctx: _Context) -> None:
        super().__init__(rule, ctx)
        self.cooldown = _seconds_to_us(rule.cooldown)
        f = rule.flapping
        self.flap_n = f.transitions if f else 0
        self.flap_window = _seconds_to_us(f.window) if f else 0
        self.flap_seconds = f.window if f else 0.0
        self.flapping_title = f"Flapping: {rule.title}"[:200]

    def _new(self, device: str) -> Any:
        s = self.states[device] = self.state_class(self.flap_n > 0)
        self.ctx.dirty = True
        return s

    def seed_open(self, device: str) -> None:
        s = self.states.get(device) or self._new(device)
        s.cond = s.open = True

    def is_open(self, device: str) -> bool:
        s = self.states.get(device)
        return bool(s and s.open)

    def threshold_for(self, value: float | None) -> float | None:
        return None

    def _settle(
        self,
        s: _Episode,
        t: int,
        changed: bool,
        r: Reading,
        asset: str,
        value: float | None,
        out: list[Detection],
    ) -> None:
        """Called when the condition and the episode disagree, or while quiet."""
        ctx = self.ctx
        rule = self.rule
        if s.quiet:
            if changed or t < s.stable_since:
                s.stable_since = t
                ctx.dirty = True
                return
            if t - s.stable_since < self.flap_window:
                return
            s.quiet = False
            s.flips.clear()  # type: ignore[union-attr]
            ctx.dirty = True
            state = "in fault; the episode stays open" if s.cond else "clear"
            ctx.note(
                f"{r.device} rule {rule.id}: stopped flapping, settled {state} "
                f"(no change for {self.flap_seconds:g}s)"
            )
            if not s.cond:
                self._clear(s, t)
                out.append(
                    self._detection(
                        EventKind.fault_cleared, r, asset, value, self.threshold_for(value)
                    )
                )
            return
        if not s.cond:
            self._clear(s, t)
            if s.flips is not None:
                self._trim(s.flips, t)
                s.flips.append(t)
            out.append(
                self._detection(EventKind.fault_cleared, r, asset, value, self.threshold_for(value))
            )
            return
        until = s.cooldown_until
        if until is not None:
            if t < until:
                if until - t > self.cooldown:  # the clock went back: wait one cooldown from now
                    s.cooldown_until = until = t + self.cooldown
                    ctx.dirty = True
                if changed:
                    ctx.note(
                        f"{r.device} rule {rule.id}: condition back during the cooldown; "
                        f"raising at the first reading from {_iso(until)} if it still holds"
                    )
                return
            s.cooldown_until = None
        ctx.dirty = True
        flips = s.flips
        if flips is not None:
            self._trim(flips, t)
            if len(flips) >= self.flap_n:  # this opening would be transition flap_n + 1
                flips.clear()
                s.open = s.quiet = True
                s.stable_since = t
                ctx.note(
                    f"{r.device} rule {rule.id}: more than {self.flap_n} opens/clears within "
                    f"{self.flap_seconds:g}s: raised one flapping event; quiet until the "
                    "condition holds steady that long"
                )
                out.append(
                    self._detection(
                        EventKind.flapping,
                        r,
                        asset,
                        value,
                        self.threshold_for(value),
                        self.flapping_title,
                    )
                )
                return
            flips.append(t)
        s.open = True
        out.append(
            self._detection(EventKind.fault_opened, r, asset, value, self.threshold_for(value))
        )

    def _clear(self, s: _Episode, t: int) -> None:
        s.open = False
        s.cooldown_until = t + self.cooldown if self.cooldown else None
        self.ctx.dirty = True

    def _trim(self, flips: deque[int], t: int) -> None:
        cut = t - self.flap_window
        while flips and flips[0] <= cut:
            flips.popleft()

    # -- state

    def dump(self, s: _Episode) -> dict[str, Any]:
        return {
            "open": s.open,
            "cond": s.cond,
            "cooldown_until": s.cooldown_until,
            "quiet": s.quiet,
            "stable_since": s.stable_since,
            "flips": list(s.flips) if s.flips is not None else [],
        }

    def load(self, d: dict[str, Any], same_rule: bool) -> _Episode:
        s = self.state_class(self.flap_n > 0)
        s.open = _field(d, "open", bool)
        s.cond = _field(d, "cond", bool) if same_rule else s.open
        s.cooldown_until = _field(d, "cooldown_until", int, none=True)
        s.quiet = _field(d, "quiet", bool) and self.flap_n > 0
        s.stable_since = _field(d, "stable_since", int)
        flips = _field(d, "flips", list)
        if s.flips is not None:
            s.flips.extend(_check(f, int, "flips") for f in flips)
        if s.quiet and not s.open:
            raise StateError("a quiet (flapping) episode must be open")
        return s


class _PendingEngine(_EpisodeEngine):
    """A condition that must hold for ``for`` seconds before it counts, and ends at once when its
    clear condition is met (threshold, implausible)."""

    state_class = _PendingState
    rule: ThresholdRule | ImplausibleRule

    def __init__(self, rule: ThresholdRule | ImplausibleRule, ctx: _Context) -> None:
        super().__init__(rule, ctx)
        self.hold = _seconds_to_us(rule.for_)

    def _step(
        self,
        s: _PendingState,
        t: int,
        breach: bool,
        cleared: bool,
        r: Reading,
        asset: str,
        out: list[Detection],
    ) -> None:
        changed = False
        if s.cond:
            if cleared:
                s.cond = False
                changed = True
        elif breach:
            p = s.pending
            if p is None or t < p:  # a new breach (or the clock went back: time it from now)
                if p is None and self.hold and not s.quiet:
                    self.ctx.note(self.crossing_note(r))
                s.pending = p = t
                self.ctx.dirty = True
            if t - p >= self.hold:
                s.pending = None
                s.cond = changed = True
        elif s.pending is not None:
            s.pending = None
            self.ctx.dirty = True
        if changed:
            self.ctx.dirty = True
        if s.quiet or s.cond != s.open:
            self._settle(s, t, changed, r, asset, r.value, out)

    @abstractmethod
    def crossing_note(self, r: Reading) -> str:
        """The log line for a reading that starts the rule's ``for`` wait."""

    def pending_since(self, device: str) -> int | None:
        s = self.states.get(device)
        return s.pending if s else None

    def dump(self, s: _PendingState) -> dict[str, Any]:  # type: ignore[override]
        return {**super().dump(s), "pending": s.pending}

    def load(self, d: dict[str, Any], same_rule: bool) -> _PendingState:
        s: _PendingState = super().load(d, same_rule)  # type: ignore[assignment]
        if same_rule:
            s.pending = _field(d, "pending", int, none=True)
        return s


class _ThresholdEngine(_PendingEngine):
    rule: ThresholdRule

    def __init__(self, rule: ThresholdRule, ctx: _Context) -> None:
        super().__init__(rule, ctx)
        self.up = rule.above is not None
        self.limit = rule.threshold
        self.level = rule.clear_level

    def observe(self, r: Reading, t: int, asset: str, out: list[Detection]) -> None:
        if r.quality != "good":
            return  # implausible values say the sensor is broken, not the machine
        s = self.states.get(r.device) or self._new(r.device)
        v = r.value
        if self.up:
            self._step(s, t, v > self.limit, v < self.level, r, asset, out)
        else:
            self._step(s, t, v < self.limit, v > self.level, r, asset, out)

    def threshold_for(self, value: float | None) -> float | None:
        return self.limit

    def crossing_note(self, r: Reading) -> str:
        rule = self.rule
        side = f"> {rule.above}" if self.up else f"< {rule.below}"
        return (
            f"{r.device} {r.metric} = {r.value:.2f} crossed {side} (rule {rule.id}); "
            f"raising if it holds for {rule.for_:g}s"
        )


class _ImplausibleEngine(_PendingEngine):
    rule: ImplausibleRule

    def __init__(self, rule: ImplausibleRule, ctx: _Context) -> None:
        super().__init__(rule, ctx)
        self.ranged = rule.min is not None or rule.max is not None
        self.low = rule.min if rule.min is not None else -_INF
        self.high = rule.max if rule.max is not None else _INF

    def observe(self, r: Reading, t: int, asset: str, out: list[Detection]) -> None:
        if self.ranged:
            v = r.value
            bad = v < self.low or v > self.high
        elif r.quality == "uncertain":
            return
        else:
            bad = r.quality == "bad"
        s = self.states.get(r.device) or self._new(r.device)
        self._step(s, t, bad, not bad, r, asset, out)

    def threshold_for(self, value: float | None) -> float | None:
        if value is not None and value < self.low:
            return self.low
        if value is not None and value > self.high:
            return self.high
        return None

    def crossing_note(self, r: Reading) -> str:
        rule = self.rule
        why = (
            f"outside [{rule.min}, {rule.max}]"
            if self.ranged
            else "outside the profile's plausible range"
        )
        return (
            f"{r.device} {r.metric} = {r.value:.2f} is {why} (rule {rule.id}); "
            f"raising a sensor fault if it stays so for {rule.for_:g}s"
        )


class _StuckEngine(_EpisodeEngine):
    state_class = _StuckState
    rule: StuckRule

    def __init__(self, rule: StuckRule, ctx: _Context) -> None:
        super().__init__(rule, ctx)
        self.hold = _seconds_to_us(rule.for_)
        self.epsilon = rule.epsilon

    def observe(self, r: Reading, t: int, asset: str, out: list[Detection]) -> None:
        if r.quality != "good":
            return
        s: _StuckState = self.states.get(r.device) or self._new(r.device)
        v = r.value
        changed = False
        ref_t = s.ref_t
        if ref_t is None or t < ref_t:  # first reading, or the clock went back: measure from now
            if ref_t is None:
                s.ref_v = v
            s.ref_t = ref_t = t
            self.ctx.dirty = True
        if abs(v - s.ref_v) <= self.epsilon:
            if not s.cond and t - ref_t >= self.hold:
                s.cond = changed = True
        else:
            s.ref_v, s.ref_t = v, t
            self.ctx.dirty = True
            if s.cond:
                s.cond = False
                changed = True
        if changed:
            self.ctx.dirty = True
        if s.quiet or s.cond != s.open:
            self._settle(s, t, changed, r, asset, v, out)

    def dump(self, s: _StuckState) -> dict[str, Any]:  # type: ignore[override]
        ref = [s.ref_t, s.ref_v] if s.ref_t is not None else None
        return {**super().dump(s), "ref": ref}

    def load(self, d: dict[str, Any], same_rule: bool) -> _StuckState:
        s: _StuckState = super().load(d, same_rule)  # type: ignore[assignment]
        ref = _field(d, "ref", list, none=True) if same_rule else None
        if ref is not None:
            if len(ref) != 2:
                raise StateError(f"ref: expected [time, value], got {ref!r}")
            s.ref_t = _check(ref[0], int, "ref")
            s.ref_v = _check(ref[1], float, "ref")
        return s


class _RateEngine(_EpisodeEngine):
    state_class = _RateState
    rule: RateOfChangeRule

    def __init__(self, rule: RateOfChangeRule, ctx: _Context) -> None:
        super().__init__(rule, ctx)
        self.span = _seconds_to_us(rule.window)
        self.rise = rule.rise if rule.rise is not None else rule.max_rate
        self.fall = rule.fall if rule.fall is not None else rule.max_rate

    def observe(self, r: Reading, t: int, asset: str, out: list[Detection]) -> None:
        if r.quality != "good":
            return
        s: _RateState = self.states.get(r.device) or self._new(r.device)
        v = r.value
        win = s.window
        if win and t < win[-1][0]:
            win.clear()  # the clock went back: measure afresh
        win.append((t, v))
        self.ctx.dirty = True
        cut = t - self.span
        while len(win) > 1 and win[1][0] <= cut:
            win.popleft()
        t0, v0 = win[0]
        rate: float | None = None
        changed = False
        if t0 <= cut:  # a reading at least one window old: the rate can be measured
            rate = (v - v0) * 1_000_000 / (t - t0)
            breach = (self.rise is not None and rate > self.rise) or (
                self.fall is not None and rate < -self.fall
            )
            if breach != s.cond:
                s.cond = breach
                changed = True
        if s.quiet or s.cond != s.open:
            self._settle(s, t, changed, r, asset, rate, out)

    def threshold_for(self, value: float | None) -> float | None:
        up = self.rise
        down = -self.fall if self.fall is not None else None
        if down is None or (up is not None and value is not None and value >= 0):
            return up
        return down

    def dump(self, s: _RateState) -> dict[str, Any]:  # type: ignore[override]
        return {**super().dump(s), "window": [[t, v] for t, v in s.window]}

    def load(self, d: dict[str, Any], same_rule: bool) -> _RateState:
        s: _RateState = super().load(d, same_rule)  # type: ignore[assignment]
        if same_rule:
            for item in _field(d, "window", list):
                if not isinstance(item, list) or len(item) != 2:
                    raise StateError(f"window: expected [time, value] pairs, got {item!r}")
                s.window.append((_check(item[0], int, "window"), _check(item[1], float, "window")))
        return s


class _CounterEngine(_Engine):
    episodic = False
    rule: CounterRule

    def __init__(self, rule: CounterRule, ctx: _Context) -> None:
        super().__init__(rule, ctx)
        self.every = rule.every
        self.anchor = rule.first_due if rule.first_due is not None else rule.every

    def _after(self, total: float) -> float:
        """The first due point of the schedule above ``total``."""
        if total < self.anchor:
            return self.anchor
        due = self.anchor + (math.floor((total - self.anchor) / self.every) + 1) * self.every
        while due <= total:  # rounding
            due += self.every
        return due

    def observe(self, r: Reading, t: int, asset: str, out: list[Detection]) -> None:
        if r.quality != "good":
            return
        v = r.value if r.value > 0 else 0.0  # a counter does not go below zero
        s: _CounterState | None = self.states.get(r.device)
        if s is None:
            s = self.states[r.device] = _CounterState()
            s.prev = v
            first = self.rule.first_due
            s.next_due = first if first is not None else self._after(v)
        else:
            prev = s.prev
            if v == prev:
                return
            if v < prev:  # type: ignore[operator]
                s.base += prev  # type: ignore[operator]
                self.ctx.note(
                    f"{r.device} {r.metric} dropped from {prev:g} to {v:g}: counter reset; "
                    f"counting on from {s.base:g} (rule {self.rule.id})"
                )
            s.prev = v
        self.ctx.dirty = True
        total = s.base + v
        if total >= s.next_due:
            due = s.next_due
            s.next_due = self._after(total)
            self.ctx.note(
                f"{r.device} {r.metric} total {total:g} passed {due:g} (rule {self.rule.id}): "
                f"maintenance due; next at {s.next_due:g}"
            )
            out.append(self._detection(EventKind.maintenance_due, r, asset, total, due))

    def total(self, device: str) -> float | None:
        s = self.states.get(device)
        return None if s is None or s.prev is None else s.base + s.prev

    def dump(self, s: _CounterState) -> dict[str, Any]:
        return {"prev": s.prev, "base": s.base, "next_due": s.next_due}

    def load(self, d: dict[str, Any], same_rule: bool) -> _CounterState:
        s = _CounterState()
        s.prev = _field(d, "prev", float)
        s.base = _field(d, "base", float)
        if same_rule:
            s.next_due = _field(d, "next_due", float)
        else:  # a changed schedule starts from the total counted so far
            s.next_due = self._after(s.base + s.prev)
        return s


_ENGINES: dict[str, type[_Engine]] = {
    "threshold": _ThresholdEngine,
    "implausible": _ImplausibleEngine,
    "stuck": _StuckEngine,
    "rate_of_change": _RateEngine,
    "counter": _CounterEngine,
}


# ------------------------------------------------------------------------------------ bank


class DetectorBank:
    """Every detection rule for every device of a site.

    ``device_profiles`` maps device id -> profile name (a rule applies to the devices of its
    profile), ``assets`` device id -> asset id. ``open_episodes`` seeds episodes known to be open
    (from the outbox) when there is no saved state to ``restore``: their next clear is emitted,
    a second opening is not.
    """

    def __init__(
        self,
        rules: DetectionFile,
        device_profiles: dict[str, str],
        assets: dict[str, str],
        *,
        open_episodes: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._ctx = _Context()
        self._engines: dict[str, _Engine] = {
            r.id: _ENGINES[r.type](r, self._ctx)  # type: ignore[arg-type]
            for r in rules.rules
        }
        self._device_profiles = dict(device_profiles)
        self._assets = dict(assets)
        by_profile: dict[str, dict[str, list[_Engine]]] = {}
        for e in self._engines.values():
            by_profile.setdefault(e.rule.profile, {}).setdefault(e.rule.metric, []).append(e)
        frozen = {p: {m: tuple(es) for m, es in ms.items()} for p, ms in by_profile.items()}
        self._routes: dict[str, dict[str, tuple[_Engine, ...]]] = {
            device: frozen.get(profile, {}) for device, profile in self._device_profiles.items()
        }
        for device, rule_id in open_episodes:
            e = self._engines.get(rule_id)
            if e is not None and e.episodic and self._applies(e, device):
                e.seed_open(device)

    def _applies(self, e: _Engine, device: str) -> bool:
        return self._device_profiles.get(device) == e.rule.profile

    def watched(self, device: str) -> Mapping[str, object]:
        """The metrics of ``device`` some rule watches (``in`` is all a caller may ask): readings
        of other metrics need not be observed at all."""
        return self._routes.get(device, _NOTHING)

    def observe(self, reading: Reading) -> list[Detection]:
        """Detections caused by this reading, in rule-file order (at most one per rule)."""
        metrics = self._routes.get(reading.device)
        if metrics is None:
            return []
        engines = metrics.get(reading.metric)
        if not engines:
            return []
        v = reading.value
        if not math.isfinite(v):  # not a reading (decoding drops them; MQTT payloads might not)
            return []
        t = _us(reading.time)
        asset = self._assets.get(reading.device, reading.asset)
        out: list[Detection] = []
        for e in engines:
            e.observe(reading, t, asset, out)
        return out

    def notices(self) -> list[str]:
        """Human-readable notes since the last call (a breach waiting out its duration, an opening
        held back by the cooldown, flapping, a counter reset), oldest first."""
        return self._ctx.drain()

    def open_episodes(self) -> set[tuple[str, str]]:
        """(device, rule id) of the episodes currently open. Counter rules have none: the edge
        never clears a maintenance_due."""
        return {
            (device, rule_id)
            for rule_id, e in self._engines.items()
            if e.episodic
            for device, s in e.states.items()
            if s.open
        }

    def counter_total(self, device: str, rule_id: str) -> float | None:
        """What a counter rule has counted for a device (across resets); None before a reading."""
        e = self._engines.get(rule_id)
        return e.total(device) if isinstance(e, _CounterEngine) else None

    @property
    def dirty(self) -> bool:
        """State changed since the last snapshot()."""
        return self._ctx.dirty

    def snapshot(self) -> dict[str, Any]:
        """All state as JSON-serialisable data (times in microseconds since 1970-01-01 UTC)."""
        state = {
            "version": STATE_VERSION,
            "rules": {
                rule_id: {
                    "type": e.rule.type,
                    "fingerprint": e.fingerprint,
                    "devices": {d: e.dump(e.states[d]) for d in sorted(e.states)},
                }
                for rule_id, e in self._engines.items()
            },
        }
        self._ctx.dirty = False
        return state

    def restore(self, state: dict[str, Any]) -> None:
        """Replace all state with a snapshot. State of rules that no longer exist, and of devices
        the rule no longer applies to, is dropped (with a notice if an episode was open); rules
        new since the snapshot start fresh. A rule whose condition changed (another type, level
        or window) keeps its episodes but measures afresh. Raises StateError, changing nothing,
        if the snapshot cannot be read."""
        try:
            loaded, notes = self._load(state)
        except StateError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"detector state is damaged: {exc!r}") from exc
        for rule_id, states in loaded.items():
            self._engines[rule_id].states = states
        for rule_id, e in self._engines.items():
            if rule_id not in loaded:
                e.states = {}
        for n in notes:
            self._ctx.note(n)
        self._ctx.dirty = True

    def _load(self, state: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            got = state.get("version") if isinstance(state, dict) else type(state).__name__
            raise StateError(
                f"detector state version {got!r} is not supported (this agent reads version "
                f"{STATE_VERSION}); remove the state file to start afresh"
            )
        loaded: dict[str, dict[str, Any]] = {}
        notes: list[str] = []
        rules = _field(state, "rules", dict)
        for rule_id, saved in rules.items():
            devices = _field(saved, "devices", dict)
            e = self._engines.get(rule_id)
            if e is None:
                if opened := sorted(d for d, s in devices.items() if s.get("open")):
                    notes.append(
                        f"rule {rule_id} is no longer in the rules file: its open episode(s) on "
                        f"{', '.join(opened)} will not be cleared by the edge"
                    )
                continue
            saved_engine = _ENGINES.get(saved.get("type"))  # type: ignore[arg-type]
            same_type = saved_engine is type(e)
            episode_kept = same_type or bool(saved_engine and saved_engine.episodic and e.episodic)
            same_rule = same_type and saved.get("fingerprint") == e.fingerprint
            if not same_rule:
                notes.append(f"rule {rule_id} changed since the state was saved: measuring afresh")
            states: dict[str, Any] = {}
            for device, d in devices.items():
                if not isinstance(d, dict):
                    raise StateError(f"rules.{rule_id}.devices.{device}: expected an object")
                if not self._applies(e, device):
                    if d.get("open"):
                        notes.append(
                            f"{device} is no longer a {e.rule.profile} device: its open episode "
                            f"of rule {rule_id} will not be cleared by the edge"
                        )
                    continue
                if episode_kept:
                    try:
                        states[device] = e.load(d, same_rule)
                    except StateError as exc:
                        raise StateError(f"rules.{rule_id}.devices.{device}.{exc}") from None
            loaded[rule_id] = states
        return loaded, notes


# ----------------------------------------------------------------- single-rule compatibility


class ThresholdDetector:
    """One threshold rule over many devices (the bank's building block, kept for callers that
    drive rules one by one). Opens a fault when the metric stays beyond the threshold for the
    rule's duration; clears it when the metric crosses the clear level (hysteresis). One open and
    one clear per episode; the rule's cooldown and flapping apply too."""

    def __init__(self, rule: ThresholdRule, active_devices: set[str] | None = None) -> None:
        self.rule = rule
        self._engine = _ThresholdEngine(rule, _Context())
        for d in active_devices or ():
            self._engine.seed_open(d)

    def is_active(self, device: str) -> bool:
        return self._engine.is_open(device)

    def pending_since(self, device: str) -> datetime | None:
        us = self._engine.pending_since(device)
        return None if us is None else _EPOCH + timedelta(microseconds=us)

    def observe(self, reading: Reading) -> Detection | None:
        if reading.metric != self.rule.metric:
            return None
        out: list[Detection] = []
        self._engine.observe(reading, _us(reading.time), reading.asset, out)
        self._engine.ctx.notes.clear()
        return out[0] if out else None


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
