"""Detection rules (rules/detection.yaml): what the edge watches for, edited by planners.

This slice supports the threshold-with-duration rule: a metric above (or below) a threshold for a
duration opens a fault; it clears when the metric crosses the clear level (hysteresis), which
defaults to the threshold itself.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from fieldloop.messages import Severity
from fieldloop.profiles import REPO_ROOT
from fieldloop.yamlfile import LocatedValueError, load, repeated

RuleId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | int | float) -> float:
    """'90s', '5m', '1.5h', '250ms' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like 30s, 5m, 2h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a duration; write it like 30s, 5m, 2h, 1d or 250ms")
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be a finite number of seconds, not negative")
    return seconds


def default_detection_file() -> Path:
    return Path(os.environ.get("FIELDLOOP_DETECTION_RULES", REPO_ROOT / "rules" / "detection.yaml"))


class ThresholdRule(BaseModel):
    # .nan or .inf in a rule would make it silently never fire: refuse them
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )

    id: RuleId
    type: Literal["threshold"] = "threshold"
    title: str = Field(min_length=1, max_length=200)
    profile: str = Field(min_length=1, description="device profile the rule applies to")
    metric: str = Field(min_length=1)
    above: float | None = None
    below: float | None = None
    for_: float = Field(0.0, alias="for", description="seconds the condition must hold")
    clear_below: float | None = None
    clear_above: float | None = None
    severity: Severity = Severity.major

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


class DetectionFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    api_version: Literal["fieldloop/v1"] = Field(alias="apiVersion")
    kind: Literal["DetectionRules"]
    rules: list[ThresholdRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        dup = repeated([r.id for r in self.rules])
        if dup:
            raise LocatedValueError(
                f"rule id {dup[1]!r} is used twice; rule ids must be unique",
                ("rules", dup[0], "id"),
            )
        return self


def load_detection(path: Path | None = None) -> DetectionFile:
    return load(path or default_detection_file(), DetectionFile)
