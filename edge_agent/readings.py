"""A reading: one decoded value of one device's resource at one edge-clock time."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, NamedTuple

Quality = Literal["good", "uncertain", "bad"]


class Reading(NamedTuple):
    """Immutable; a named tuple rather than a frozen dataclass because the agent makes tens of
    thousands a second and a tuple is built in a third of the time."""

    device: str
    asset: str
    metric: str
    time: datetime
    value: float
    quality: Quality = "good"
