"""Detection rules (rules/detection.yaml): what the edge watches for, edited by planners.

Every rule names a device profile and one of its metrics, and has a ``type`` (``threshold`` when
left out):

* ``threshold`` - the metric above (or below) a level for a duration opens a fault; it clears
  when the metric crosses the clear level (hysteresis), which defaults to the level itself.
* ``rate_of_change`` - the metric rises (or falls) faster than a limit per second, measured over
  a window.
* ``counter`` - a running counter (run hours, starts) raises ``maintenance_due`` every N units,
  counting on across counter resets.
* ``stuck`` - the metric has not moved by more than ``epsilon`` for a duration.
* ``implausible`` - the metric is outside the rule's plausible range, or (with no range) the
  reading's quality is bad: the sensor, not the machine, is broken.

All but counters share ``cooldown`` (after a clear, a new fault is not raised for this long) and
``flapping`` (more than ``transitions`` opens/clears within ``window`` raise one ``flapping``
event and then stay quiet until the condition settles). The semantics live in
``edge_agent.detectors``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from fieldloop.durations import parse_duration
from fieldloop.messages import Severity
from fieldloop.profiles import REPO_ROOT
from fieldloop.yamlfile import LocatedValueError, load, require_unique

__all__ = [
    "AnyRule",
    "CounterRule",
    "DetectionFile",
    "Flapping",
    "ImplausibleRule",
    "RateOfChangeRule",
    "StuckRule",
    "ThresholdRule",
    "default_detection_file",
    "load_detection",
    "parse_duration",
]

RuleId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]


def default_detection_file() -> Path:
    return Path(os.environ.get("FIELDLOOP_DETECTION_RULES", REPO_ROOT / "rules" / "detection.yaml"))


def _positive_duration(value: object, what: str) -> float:
    seconds = parse_duration(value)  # type: ignore[arg-type]
    if seconds <= 0:
        raise ValueError(f"{what} must be longer than 0s")
    return seconds


class _Strict(BaseModel):
    # .nan or .inf in a rule would make it silently never fire: refuse them
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )


class Flapping(_Strict):
    """More than ``transitions`` opens and clears within ``window`` is flapping."""

    transitions: int = Field(ge=2, strict=True, description="more than this many is flapping")
    window: float = Field(description="seconds")

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, v: object) -> float:
        return _positive_duration(v, "the flapping window")


class _Rule(_Strict):
    """Keys every rule has."""

    id: RuleId
    title: str = Field(min_length=1, max_length=200)
    profile: str = Field(min_length=1, description="device profile the rule applies to")
    metric: str = Field(min_length=1)
    severity: Severity = Severity.major
    cooldown: float = Field(0.0, description="seconds after a clear before a new fault opens")
    flapping: Flapping | None = None

    @field_validator("cooldown", mode="before")
    @classmethod
    def _cooldown(cls, v: object) -> float:
        return parse_duration(v)  # type: ignore[arg-type]


class ThresholdRule(_Rule):
    type: Literal["threshold"] = "threshold"
    above: float | None = None
    below: float | None = None
    for_: float = Field(0.0, alias="for", description="seconds the condition must hold")
    clear_below: float | None = None
    clear_above: float | None = None

    @field_validator("for_", mode="before")
    @classmethod
    def _duration(cls, v: object) -> float:
        return parse_duration(v)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _one_direction(self) -> Self:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above or below")
        if self.above is not None:
            if self.clear_above is not None:
                raise ValueError("a rule on 'above' clears with clear_below, not clear_above")
            if self.clear_below is not None and self.clear_below > self.above:
                raise ValueError(
                    f"clear_below ({self.clear_below}) must not be above 'above' ({self.above})"
                )
        if self.below is not None:
            if self.clear_below is not None:
                raise ValueError("a rule on 'below' clears with clear_above, not clear_below")
            if self.clear_above is not None and self.clear_above < self.below:
                raise ValueError(
                    f"clear_above ({self.clear_above}) must not be below 'below' ({self.below})"
                )
        return self

    @property
    def threshold(self) -> float:
        return self.above if self.above is not None else self.below  # type: ignore[return-value]

    @property
    def clear_level(self) -> float:
        if self.above is not None:
            return self.clear_below if self.clear_below is not None else self.above
        return self.clear_above if self.clear_above is not None else self.below  # type: ignore[return-value]


class RateOfChangeRule(_Rule):
    """The metric changes faster than a limit (units per second), measured between the newest
    reading and the newest one at least ``window`` older."""

    type: Literal["rate_of_change"]
    rise: float | None = Field(None, gt=0, description="units per second upwards")
    fall: float | None = Field(None, gt=0, description="units per second downwards (positive)")
    max_rate: float | None = Field(None, gt=0, description="units per second either way")
    window: float = Field(description="seconds")

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, v: object) -> float:
        return _positive_duration(v, "the window")

    @model_validator(mode="after")
    def _limits(self) -> Self:
        if self.max_rate is not None and (self.rise is not None or self.fall is not None):
            raise ValueError("max_rate limits both directions: give it alone, or rise and/or fall")
        if self.max_rate is None and self.rise is None and self.fall is None:
            raise ValueError("give rise and/or fall (units per second), or max_rate")
        return self


class CounterRule(_Rule):
    """A running counter (run hours): ``maintenance_due`` each time the total passes the next
    multiple of ``every`` (counted from ``first_due`` if given). A counter that drops has been
    reset; counting goes on from the total it had."""

    type: Literal["counter"]
    every: float = Field(gt=0, description="units of the metric between maintenance")
    first_due: float | None = Field(None, gt=0, description="total at which the first one is due")

    @model_validator(mode="after")
    def _never_clears(self) -> Self:
        for key in ("cooldown", "flapping"):
            if key in self.model_fields_set:
                raise LocatedValueError(
                    f"a counter rule raises maintenance_due and never clears, so {key} does "
                    "not apply; remove it",
                    (key,),
                )
        return self


class StuckRule(_Rule):
    """The metric has stayed within ``epsilon`` of where it was for ``for``."""

    type: Literal["stuck"]
    for_: float = Field(alias="for", description="seconds without moving")
    epsilon: float = Field(0.0, ge=0, description="moves up to this much do not count")

    @field_validator("for_", mode="before")
    @classmethod
    def _duration(cls, v: object) -> float:
        return _positive_duration(v, "a stuck rule's 'for'")


class ImplausibleRule(_Rule):
    """The metric is outside [min, max]; with neither, a reading of quality 'bad' (outside the
    profile's min/max) is implausible."""

    type: Literal["implausible"]
    min: float | None = None
    max: float | None = None
    for_: float = Field(0.0, alias="for", description="seconds the condition must hold")

    @field_validator("for_", mode="before")
    @classmethod
    def _duration(cls, v: object) -> float:
        return parse_duration(v)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self


AnyRule = ThresholdRule | RateOfChangeRule | CounterRule | StuckRule | ImplausibleRule


class DetectionFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    api_version: Literal["fieldloop/v1"] = Field(alias="apiVersion")
    kind: Literal["DetectionRules"]
    rules: list[Annotated[AnyRule, Field(discriminator="type")]] = Field(default_factory=list)

    @field_validator("rules", mode="before")
    @classmethod
    def _threshold_by_default(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        return [
            {**r, "type": "threshold"} if isinstance(r, dict) and "type" not in r else r for r in v
        ]

    @model_validator(mode="after")
    def _unique(self) -> Self:
        require_unique([r.id for r in self.rules], "rule id", "id", "rules")
        return self


def load_detection(path: Path | None = None) -> DetectionFile:
    return load(path or default_detection_file(), DetectionFile)
