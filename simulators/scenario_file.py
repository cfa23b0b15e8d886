"""Scenario files (YAML): what each simulated device's resources do over scenario time, and the
ground truth of every fault a scenario injects.

    apiVersion: fieldloop/v1
    kind: Scenario
    name: chiller_overheat
    profiles:                      # every device of the profile, unless the device says otherwise
      chiller:
        signals:
          supply_water_temp: {type: constant, value: 7, noise: 0.2}
    devices:
      chiller-1:
        signals:
          discharge_temp: {type: drift_hold_recover, base: 80, peak: 100, start: 3s, ramp: 8s,
                           hold: 12s, recover: 4s}
        faults:
          - {kind: comm_loss, from: 2m, to: 3m}
    site_faults:                   # every device of the site: a power blip
      - {kind: comm_loss, from: 10m, to: 620s}

Loaded strictly like every FieldLoop file (unknown keys, bad values: file:line:col with a fix);
``bind`` then checks the file against a site: every device and resource it names must exist.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from fieldloop.durations import parse_duration
from fieldloop.profiles import Site, default_profiles_dir
from fieldloop.yamlfile import FileError, FileProblem, parse_yaml, position, validate
from simulators import signals
from simulators.faults import DeviceFault
from simulators.scenarios import InjectedFault, Scenario


def _duration(v: object) -> float:
    if not isinstance(v, str | int | float):
        raise ValueError("a duration is a number of seconds or text like 30s, 5m, 2h")
    return parse_duration(v)


#: seconds of scenario time, written as 90s, 5m, 2h, 3d or a number
Duration = Annotated[float, BeforeValidator(_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )


class Window(_Strict):
    """From ``from`` to ``to`` seconds of scenario time (``to`` absent: until the end)."""

    from_: Duration = Field(alias="from")
    to: Duration | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.to is not None and self.to <= self.from_:
            raise ValueError(f"to ({self.to:g}s) must come after from ({self.from_:g}s)")
        return self


class _Signal(_Strict):
    noise: float = Field(0.0, ge=0, description="+- this much, deterministic for a seed")
    stuck: Window | None = Field(None, description="the value freezes in this window")

    @abstractmethod
    def build(self) -> signals.Signal:
        """The signal this spec describes (without the stuck window)."""

    def faults(self) -> list[tuple[str, float, float | None]]:
        """(kind, start, end) of what this signal injects, for the ground truth."""
        return []

    def signal(self) -> signals.Signal:
        s = self.build()
        return s if self.stuck is None else signals.Stuck(s, self.stuck.from_, self.stuck.to)

    def truth(self) -> list[tuple[str, float, float | None]]:
        stuck = [] if self.stuck is None else [("stuck", self.stuck.from_, self.stuck.to)]
        return self.faults() + stuck


class ConstantSpec(_Signal):
    type: Literal["constant"]
    value: float

    def build(self) -> signals.Signal:
        return signals.Constant(self.value, jitter=self.noise)


class SineSpec(_Signal):
    type: Literal["sine"]
    mean: float
    amplitude: float
    period: Duration = Field(86400.0, description="default one day")
    phase: Duration = 0.0

    @field_validator("period")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("period must be longer than 0s")
        return v

    def build(self) -> signals.Signal:
        return signals.Sine(self.mean, self.amplitude, self.period, self.phase, self.noise)


class RampSpec(_Signal):
    type: Literal["ramp"]
    from_: float = Field(alias="from")
    by: float
    over: Duration
    start: Duration = 0.0

    def build(self) -> signals.Signal:
        return signals.Ramp(self.from_, self.by, self.over, self.start, self.noise)

    def faults(self) -> list[tuple[str, float, float | None]]:
        return [("drift", self.start, self.start + self.over)]


class StepSpec(_Signal):
    type: Literal["step"]
    before: float
    after: float
    at: Duration

    def build(self) -> signals.Signal:
        return signals.Step(self.before, self.after, self.at, self.noise)

    def faults(self) -> list[tuple[str, float, float | None]]:
        return [("step", self.at, None)]


class SpikeSpec(_Signal):
    type: Literal["spike"]
    base: float
    peak: float
    at: Duration
    width: Duration

    def build(self) -> signals.Signal:
        return signals.Spike(self.base, self.peak, self.at, self.width, self.noise)

    def faults(self) -> list[tuple[str, float, float | None]]:
        return [("spike", self.at, self.at + self.width)]


class FlappingSpec(_Signal):
    type: Literal["flapping"]
    around: float
    amplitude: float
    every: Duration
    start: Duration = 0.0
    end: Duration | None = None

    @field_validator("every")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("every must be longer than 0s")
        return v

    def build(self) -> signals.Signal:
        return signals.Flapping(
            self.around, self.amplitude, self.every, self.start, self.end, self.noise
        )

    def faults(self) -> list[tuple[str, float, float | None]]:
        return [("flapping", self.start, self.end)]


class CounterSpec(_Signal):
    type: Literal["counter"]
    start: float = 0.0
    per_hour: float = Field(1.0, description="growth per hour of scenario time (run hours: 1)")
    reset_at: Duration | None = None

    def build(self) -> signals.Signal:
        rate = self.per_hour / 3600
        if self.reset_at is None:
            return signals.Counter(self.start, rate)
        return signals.ResettingCounter(self.start, rate, self.reset_at)

    def faults(self) -> list[tuple[str, float, float | None]]:
        return [] if self.reset_at is None else [("counter_reset", self.reset_at, self.reset_at)]


class DriftHoldRecoverSpec(_Signal):
    type: Literal["drift_hold_recover"]
    base: float
    peak: float
    start: Duration = 0.0
    ramp: Duration
    hold: Duration
    recover: Duration

    def build(self) -> signals.Signal:
        return signals.DriftHoldRecover(
            self.base, self.peak, self.start, self.ramp, self.hold, self.recover,
            jitter=self.noise,
        )  # fmt: skip

    def faults(self) -> list[tuple[str, float, float | None]]:
        end = self.start + self.ramp + self.hold + self.recover
        return [("drift_hold_recover", self.start, end)]


SignalSpec = Annotated[
    ConstantSpec | SineSpec | RampSpec | StepSpec | SpikeSpec | FlappingSpec | CounterSpec
    | DriftHoldRecoverSpec,
    Field(discriminator="type"),
]  # fmt: skip
Resources = dict[str, SignalSpec]


class _Fault(Window):
    def fault(self) -> DeviceFault:
        return DeviceFault(self.kind, self.from_, self.to)  # type: ignore[attr-defined]


class CommLossSpec(_Fault):
    kind: Literal["comm_loss"]


class WrongOrderSpec(_Fault):
    kind: Literal["wrong_order"]


class DropConnectionSpec(_Fault):
    kind: Literal["drop_connection"]


class MalformedSpec(_Fault):
    kind: Literal["malformed"]


class SlowSpec(_Fault):
    kind: Literal["slow"]
    delay: Duration

    def fault(self) -> DeviceFault:
        return DeviceFault("slow", self.from_, self.to, delay=self.delay)


class ExceptionSpec(_Fault):
    kind: Literal["exception"]
    code: int = Field(ge=1, le=255, description="Modbus exception code: 4 device failure, ...")

    def fault(self) -> DeviceFault:
        return DeviceFault("exception", self.from_, self.to, code=self.code)


FaultSpec = Annotated[
    CommLossSpec | SlowSpec | ExceptionSpec | WrongOrderSpec | DropConnectionSpec | MalformedSpec,
    Field(discriminator="kind"),
]


class DeviceSpec(_Strict):
    signals: Resources = Field(default_factory=dict)
    faults: list[FaultSpec] = Field(default_factory=list)


class ScenarioFile(_Strict):
    api_version: Literal["fieldloop/v1"] = Field(alias="apiVersion")
    kind: Literal["Scenario"]
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    extends: str | None = Field(
        None, description="a scenario file beside this one (name without .yaml) to build on"
    )
    profiles: dict[str, DeviceSpec] = Field(default_factory=dict)
    devices: dict[str, DeviceSpec] = Field(default_factory=dict)
    site_faults: list[FaultSpec] = Field(default_factory=list)


def load_scenario_file(path: Path) -> tuple[ScenarioFile, Any]:
    """The validated file and its parsed YAML (for positions when it is bound to a site)."""
    data = parse_yaml(path)
    return validate(path, data, ScenarioFile), data


MAX_EXTENDS = 8


def _chain(path: Path) -> list[tuple[Path, ScenarioFile, Any]]:
    """The file and the files it extends, the most basic first."""
    chain: list[tuple[Path, ScenarioFile, Any]] = []
    while True:
        spec, data = load_scenario_file(path)
        chain.insert(0, (path, spec, data))
        if spec.extends is None:
            return chain
        base = path.parent / (spec.extends if spec.extends.endswith(".yaml") else
                              f"{spec.extends}.yaml")  # fmt: skip
        if not base.is_file() or len(chain) > MAX_EXTENDS:
            line, col = position(data, ("extends",))
            why = (
                "does not exist" if not base.is_file() else f"extends more than {MAX_EXTENDS} deep"
            )
            raise FileError([FileProblem(str(path), line, col, f"extends: {base} {why}")])
        path = base


def _extended(base: ScenarioFile, more: ScenarioFile) -> ScenarioFile:
    """``more`` on top of ``base``: its signals replace the base's, its faults add to them."""

    def merge(a: dict[str, DeviceSpec], b: dict[str, DeviceSpec]) -> dict[str, DeviceSpec]:
        none = DeviceSpec()
        return {
            k: DeviceSpec(
                signals={**a.get(k, none).signals, **b.get(k, none).signals},
                faults=[*a.get(k, none).faults, *b.get(k, none).faults],
            )
            for k in {*a, *b}
        }

    return more.model_copy(
        update={
            "profiles": merge(base.profiles, more.profiles),
            "devices": merge(base.devices, more.devices),
            "site_faults": [*base.site_faults, *more.site_faults],
        }
    )


def _site_problems(path: Path, spec: ScenarioFile, data: Any, site: Site) -> list[FileProblem]:
    """What ``spec`` names that ``site`` lacks. A profile no device of the site has is fine if
    it exists (a shared scenario covers device models this site does not have)."""
    problems: list[FileProblem] = []
    by_id = {d.id: d for d in site.spec.devices}
    known = {p.stem for p in _profiles_dir(site).glob("*.yaml")} | set(site.profiles)

    def problem(loc: tuple[str | int, ...], message: str) -> None:
        line, col = position(data, loc)
        problems.append(FileProblem(str(path), line, col, message))

    def check(loc: tuple[str, str], profile: str, entry: DeviceSpec) -> None:
        names = [r.name for r in site.profiles[profile].resources]
        for name in entry.signals:
            if name not in names:
                problem((*loc, "signals", name), f"profile {profile!r} has no resource {name!r} "
                        f"(it has: {', '.join(names)})")  # fmt: skip

    for profile, entry in spec.profiles.items():
        if profile in site.profiles:
            check(("profiles", profile), profile, entry)
        elif profile not in known:
            problem(("profiles", profile), f"there is no device profile {profile!r} "
                    f"(known: {', '.join(sorted(known))})")  # fmt: skip
    for device, entry in spec.devices.items():
        if device not in by_id:
            problem(("devices", device), f"the site has no device {device!r} "
                    f"(its devices: {', '.join(sorted(by_id))})")  # fmt: skip
        else:
            check(("devices", device), by_id[device].profile, entry)
    return problems


def _profiles_dir(site: Site) -> Path:
    if site.spec.profiles_dir:
        return site.path.parent / site.spec.profiles_dir
    return default_profiles_dir()


def bind(path: Path, site: Site) -> Callable[[str], Scenario]:
    """The scenario of each device of ``site``, as ``build_site_simulators`` wants it. Raises
    FileError naming every device, profile or resource the file (or a file it extends) names
    that the site lacks."""
    chain = _chain(path)
    problems = [p for f, spec, data in chain for p in _site_problems(f, spec, data, site)]
    if problems:
        raise FileError(problems)
    spec = chain[0][1]
    for _, more, _ in chain[1:]:
        spec = _extended(spec, more)
    by_id = {d.id: d for d in site.spec.devices}

    def scenario(device: str) -> Scenario:
        shared = spec.profiles.get(by_id[device].profile, DeviceSpec())
        own = spec.devices.get(device, DeviceSpec())
        specs = {**shared.signals, **own.signals}
        faults = tuple(f.fault() for f in [*spec.site_faults, *shared.faults, *own.faults])
        truth = [
            InjectedFault(device, resource, kind, start, end)
            for resource, s in specs.items()
            for kind, start, end in s.truth()
        ] + [InjectedFault(device, "*", f.kind, f.start, f.end) for f in faults]
        return Scenario(spec.name, {r: s.signal() for r, s in specs.items()}, tuple(truth), faults)

    return scenario
