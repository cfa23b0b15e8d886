"""Signals: a resource's engineering value as a pure function of scenario time (seconds).

Noise is a hash of (seed, resource, time bucket), so a scenario replays identically for a seed
whatever the poll timing.
"""

from __future__ import annotations

import hashlib
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
