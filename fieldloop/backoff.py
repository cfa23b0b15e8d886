"""Capped, jittered exponential backoff for reconnect loops (pure: the caller sleeps)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float = 0.5
    cap: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2  # +-20 %: many gateways restarting together must not reconnect in step
    rng: random.Random = field(default_factory=random.Random)
    _next: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._next = self.initial

    def next_delay(self) -> float:
        base = self._next
        self._next = min(self.cap, self._next * self.factor)
        return base * (1 + self.rng.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self._next = self.initial
