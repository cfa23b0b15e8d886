"""Signals: a resource's engineering value as a pure function of scenario time (seconds).

Noise is a hash of (seed, resource, time bucket), so a scenario replays identically for a seed
whatever the poll timing.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Protocol


class Signal(Protocol):
    def value(self, t: float, seed: int, name: str) -> float: ...


def noise(seed: int, name: str, t: float, amplitude: float, bucket: float = 0.5) -> float:
    """Deterministic noise in [-amplitude, amplitude], constant within a time bucket."""
    if amplitude == 0:
        return 0.0
    key = f"{seed}:{name}:{int(t // bucket)}".encode()
    u = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64
    return (2 * u - 1) * amplitude


@dataclass(frozen=True)
class Constant:
    level: float
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.jitter < 0:
            raise ValueError(f"jitter must be >= 0, got {self.jitter}")

    def value(self, t: float, seed: int, name: str) -> float:
        return self.level + noise(seed, name, t, self.jitter)


@dataclass(frozen=True)
class Counter:
    """A counter that grows at ``rate`` per second of scenario time (run hours: rate=1/3600)."""

    start: float
    rate: float

    def value(self, t: float, seed: int, name: str) -> float:
        return self.start + self.rate * max(t, 0.0)


@dataclass(frozen=True)
class DriftHoldRecover:
    """Sits at ``base``, drifts linearly to ``peak`` over ``ramp`` s from ``start``, holds for
    ``hold`` s, returns to ``base`` over ``recover`` s; with ``period`` it repeats."""

    base: float
    peak: float
    start: float
    ramp: float
    hold: float
    recover: float
    period: float | None = None
    jitter: float = 0.0

    def __post_init__(self) -> None:
        for field in ("start", "ramp", "hold", "recover"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)}")
        if (
            self.period is not None
            and self.period < self.start + self.ramp + self.hold + self.recover
        ):
            raise ValueError("period must be at least start + ramp + hold + recover")

    def shape(self, t: float) -> float:
        if self.period:
            t = t % self.period
        t -= self.start
        if t <= 0:
            return self.base
        span = self.peak - self.base
        if t < self.ramp:
            return self.base + span * t / self.ramp
        t -= self.ramp
        if t < self.hold:
            return self.peak
        t -= self.hold
        if t < self.recover:
            return self.peak - span * t / self.recover
        return self.base

    def value(self, t: float, seed: int, name: str) -> float:
        return self.shape(t) + noise(seed, name, t, self.jitter)

    def crossing_times(self, level: float) -> tuple[float, float] | None:
        """When (first period) the clean shape rises through ``level`` and falls back under it."""
        lo, hi = sorted((self.base, self.peak))
        if not lo < level < hi:
            return None
        frac = (level - self.base) / (self.peak - self.base)
        up = self.start + self.ramp * frac
        down = self.start + self.ramp + self.hold + self.recover * (1 - frac)
        return up, down


def _window(t: float, start: float, end: float | None) -> bool:
    return start <= t and (end is None or t < end)


@dataclass(frozen=True)
class Sine:
    """A daily cycle (or any ``period``): ``mean`` +- ``amplitude``, peaking at ``phase`` +
    period / 4."""

    mean: float
    amplitude: float
    period: float = 86400.0
    phase: float = 0.0
    jitter: float = 0.0

    def value(self, t: float, seed: int, name: str) -> float:
        angle = 2 * math.pi * (t - self.phase) / self.period
        return self.mean + self.amplitude * math.sin(angle) + noise(seed, name, t, self.jitter)


@dataclass(frozen=True)
class Ramp:
    """A drift: ``start_value`` until ``start``, then ``by`` more spread evenly over ``over``
    seconds, then stays there (bearing wear: vibration rising over days)."""

    start_value: float
    by: float
    over: float
    start: float = 0.0
    jitter: float = 0.0

    def value(self, t: float, seed: int, name: str) -> float:
        done = min(1.0, max(0.0, (t - self.start) / self.over)) if self.over > 0 else 1.0
        return self.start_value + self.by * done + noise(seed, name, t, self.jitter)


@dataclass(frozen=True)
class Step:
    before: float
    after: float
    at: float
    jitter: float = 0.0

    def value(self, t: float, seed: int, name: str) -> float:
        level = self.after if t >= self.at else self.before
        return level + noise(seed, name, t, self.jitter)


@dataclass(frozen=True)
class Spike:
    """``base``, with ``peak`` for ``width`` seconds from ``at``."""

    base: float
    peak: float
    at: float
    width: float
    jitter: float = 0.0

    def value(self, t: float, seed: int, name: str) -> float:
        level = self.peak if _window(t, self.at, self.at + self.width) else self.base
        return level + noise(seed, name, t, self.jitter)


@dataclass(frozen=True)
class Flapping:
    """Between ``start`` and ``end``, alternates ``around`` + ``amplitude`` and ``around`` -
    ``amplitude`` every ``every`` seconds (79.9 / 80.1 around a threshold of 80); ``around``
    otherwise."""

    around: float
    amplitude: float
    every: float
    start: float = 0.0
    end: float | None = None
    jitter: float = 0.0

    def value(self, t: float, seed: int, name: str) -> float:
        if not _window(t, self.start, self.end):
            return self.around + noise(seed, name, t, self.jitter)
        up = int((t - self.start) // self.every) % 2 == 0
        level = self.around + (self.amplitude if up else -self.amplitude)
        return level + noise(seed, name, t, self.jitter)


@dataclass(frozen=True)
class ResettingCounter:
    """A counter growing at ``rate`` per second from ``start``, reset to zero at ``reset_at``
    (a replaced controller, a counter rollover), growing again after."""

    start: float
    rate: float
    reset_at: float

    def value(self, t: float, seed: int, name: str) -> float:
        t = max(t, 0.0)
        if t < self.reset_at:
            return self.start + self.rate * t
        return self.rate * (t - self.reset_at)


@dataclass(frozen=True)
class Stuck:
    """``inner``, frozen at its value of ``start`` until ``end``: a sensor that stopped moving."""

    inner: Signal
    start: float
    end: float | None = None

    def value(self, t: float, seed: int, name: str) -> float:
        if _window(t, self.start, self.end):
            t = self.start
        return self.inner.value(t, seed, name)
