"""What every intake channel must provide before a ticket exists: the REST API, the web form and
the signed webhook all validate through this one model, so they produce the same ticket. Pure."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from central.domain.labels import by_label


class Urgency(StrEnum):
    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"


URGENCY_LABELS: dict[Urgency, tuple[str, str]] = {
    Urgency.critical: ("Critical", "紧急"),
    Urgency.high: ("High", "高"),
    Urgency.medium: ("Medium", "中"),
    Urgency.low: ("Low", "低"),
}

#: The priority a reported urgency starts at, until the priority rules score it.
PRIORITY_BY_URGENCY: dict[Urgency, str] = {
    Urgency.critical: "P1",
    Urgency.high: "P2",
    Urgency.medium: "P3",
    Urgency.low: "P4",
}


def refuse_nul(value: object) -> object:
    """NUL is never text a person typed, and PostgreSQL cannot store it: refuse it by name."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("contains a NUL character (\\u0000)")
    return value


def parse_urgency(value: object) -> object:
    """Accept the key, the English or the Chinese label ("high", "High", "高")."""
    if isinstance(value, str):
        return by_label(value, URGENCY_LABELS) or value  # else the enum check names the values
    return value


class TicketRequest(BaseModel):
    """A problem report. Server-owned fields (state, assignee, priority, SLA, hashes) are not
    here, and unknown fields are refused, so no channel can set them."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    location: str = Field(min_length=1, max_length=255, description="where: site, building, room")
    problem_type: str = Field(
        min_length=1, max_length=64, description="e.g. hvac, electrical, plumbing, 空调"
    )
    urgency: Annotated[Urgency, BeforeValidator(parse_urgency)] = Field(
        description="critical | high | medium | low (紧急 | 高 | 中 | 低)"
    )
    description: str = Field(min_length=1, max_length=20_000)
    reporter: str = Field(min_length=1, max_length=128, description="who reports it")
    contact: str = Field(min_length=3, max_length=255, description="phone or e-mail to reach them")
    asset_id: str | None = Field(None, min_length=1, max_length=128, description="when known")
    title: str | None = Field(None, min_length=1, max_length=200, description="default: first line")
    site: str | None = Field(None, min_length=1, max_length=128)

    _no_nul = field_validator("*", mode="before")(classmethod(lambda cls, v: refuse_nul(v)))

    def display_title(self) -> str:
        if self.title:
            return self.title
        first = self.description.splitlines()[0].strip()
        return first if len(first) <= 200 else first[:199] + "…"
