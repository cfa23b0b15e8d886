"""Named scenarios shipped with FieldLoop: a signal per resource of a profile, plus ground truth.

Scenario files (YAML) arrive with the simulator issue; these built-ins serve the demo and tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simulators.faults import DeviceFault
from simulators.signals import Constant, Counter, DriftHoldRecover, Signal


@dataclass(frozen=True)
class InjectedFault:
    """Ground truth: what the scenario did to which resource, and when (scenario seconds)."""

    device: str
    resource: str
    kind: str
    start: float
    end: float | None


@dataclass(frozen=True)
class Scenario:
    name: str
    signals: dict[str, Signal]
    #: ground truth: everything injected, signal faults and device faults alike
    faults: tuple[InjectedFault, ...] = field(default_factory=tuple)
    #: how the device itself misbehaves (not answering, slow, exception codes, ...)
    device_faults: tuple[DeviceFault, ...] = field(default_factory=tuple)


def chiller_normal(device: str = "chiller-1") -> Scenario:
    return Scenario(
        "normal",
        {
            "supply_water_temp": Constant(7.0, jitter=0.2),
            "return_water_temp": Constant(12.0, jitter=0.2),
            "compressor_current": Constant(180.0, jitter=3.0),
            "run_hours": Counter(1520.0, 1 / 3600),
            "discharge_temp": Constant(80.0, jitter=0.5),
        },
    )


def chiller_overheat(
    device: str = "chiller-1",
    *,
    start: float = 3.0,
    ramp: float = 8.0,
    hold: float = 12.0,
    recover: float = 4.0,
    period: float | None = None,
    base: float = 80.0,
    peak: float = 100.0,
) -> Scenario:
    """Discharge temperature drifts from 80 to 100 degC, holds, then recovers: a condenser fouling
    or refrigerant issue that the detection rule (above 95 for 5 s) turns into one ticket."""
    drift = DriftHoldRecover(base, peak, start, ramp, hold, recover, period=period)
    normal = chiller_normal(device).signals
    up_down = drift.crossing_times(95.0)
    faults = (
        (InjectedFault(device, "discharge_temp", "drift_over_threshold", *up_down),)
        if up_down
        else ()
    )
    return Scenario(
        "chiller_overheat",
        {**normal, "discharge_temp": drift, "compressor_current": Constant(215.0, jitter=3.0)},
        faults,
    )


BUILTIN = {"normal": chiller_normal, "chiller_overheat": chiller_overheat}
