"""A reading: one decoded value of one device's resource at one edge-clock time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Quality = Literal["good", "uncertain", "bad"]


@dataclass(frozen=True, slots=True)
class Reading:
    device: str
    asset: str
    metric: str
    time: datetime
    value: float
    quality: Quality = "good"
