"""Device faults a scenario injects, and what a device does at a moment of scenario time. Pure.

Kinds, as field engineers meet them:
- ``comm_loss``: the device does not answer at all (a cut cable, a device without power);
- ``slow``: it answers ``delay`` seconds late (a busy serial gateway, a weak radio link);
- ``exception``: it answers every read with Modbus exception ``code`` (4: device failure,
  6: busy, 11: a gateway whose target does not respond, ...);
- ``wrong_order``: its registers come with bytes and words swapped (a replaced meter of another
  firmware, a wrong gateway setting): values are garbage, not missing;
- ``drop_connection``: the TCP connection is cut mid-answer (a gateway reboot);
- ``malformed``: an MQTT device publishes payloads that are not valid JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FaultKind = Literal[
    "comm_loss", "slow", "exception", "wrong_order", "drop_connection", "malformed"
]  # fmt: skip


@dataclass(frozen=True)
class DeviceFault:
    kind: FaultKind
    start: float  # scenario seconds
    end: float | None  # None: until the scenario ends
    delay: float = 0.0  # slow
    code: int = 0  # exception

    def __post_init__(self) -> None:
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"{self.kind}: end ({self.end:g}s) must come after start")
        if self.kind == "slow" and self.delay <= 0:
            raise ValueError("slow: delay must be longer than 0s")
        if self.kind == "exception" and not 1 <= self.code <= 255:
            raise ValueError(f"exception: code must be 1..255, got {self.code}")

    def active(self, t: float) -> bool:
        return self.start <= t and (self.end is None or t < self.end)


@dataclass(frozen=True)
class Behaviour:
    """How the device answers a request at one moment."""

    silent: bool = False
    delay: float = 0.0
    exception: int | None = None
    swapped: bool = False
    drop: bool = False
    malformed: bool = False


NORMAL = Behaviour()


def behaviour(faults: tuple[DeviceFault, ...], t: float) -> Behaviour:
    """What ``faults`` make the device do at scenario time ``t``. Overlapping faults combine;
    silence wins over everything a device would otherwise say."""
    active = [f for f in faults if f.active(t)]
    if not active:
        return NORMAL
    kinds = {f.kind for f in active}
    codes = [f.code for f in active if f.kind == "exception"]
    return Behaviour(
        silent="comm_loss" in kinds,
        delay=max((f.delay for f in active if f.kind == "slow"), default=0.0),
        exception=codes[0] if codes else None,
        swapped="wrong_order" in kinds,
        drop="drop_connection" in kinds,
        malformed="malformed" in kinds,
    )
