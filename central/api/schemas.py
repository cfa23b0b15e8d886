"""API schemas per resource: what clients may send (…In) and what they get back (…Public).
Server-owned fields (state, ids, times, hashes) never appear in an input schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from central.domain.lifecycle import STATE_LABELS, Action, State, allowed_actions
from central.storage.models import Ticket


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ActorIn(_In):
    actor: str = Field(
        min_length=1, max_length=128, description="who acts (engineer or supervisor id)"
    )
    note: str | None = Field(None, max_length=4000)


class CompleteIn(ActorIn):
    report: str = Field(min_length=1, max_length=20_000, description="what was found and done")


class StateLabel(BaseModel):
    key: State
    en: str
    zh: str

    @classmethod
    def of(cls, state: State) -> StateLabel:
        en, zh = STATE_LABELS[state]
        return cls(key=state, en=en, zh=zh)


class HistoryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str | None
    note: str | None
    data: dict[str, Any]
    hash: str


class TicketPublic(BaseModel):
    id: int
    state: StateLabel
    state_entered_at: datetime
    allowed_actions: list[Action]
    source: str
    title: str
    description: str
    category: str | None
    priority: str | None
    severity: str | None
    location: str | None
    site: str | None
    asset_id: str | None
    device_id: str | None
    rule_id: str | None
    assignee: str | None
    fault_active: bool
    fault_opened_at: datetime | None
    fault_cleared_at: datetime | None
    occurrences: int
    readings: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None

    @classmethod
    def of(cls, t: Ticket) -> TicketPublic:
        state = State(t.state)
        copied = {f: getattr(t, f) for f in TicketPublic.model_fields if f not in _DERIVED}
        return cls(**copied, state=StateLabel.of(state), allowed_actions=allowed_actions(state))


_DERIVED = frozenset({"state", "allowed_actions"})


class TicketDetail(TicketPublic):
    history: list[HistoryPublic]

    @classmethod
    def of(cls, t: Ticket) -> TicketDetail:
        base = TicketPublic.of(t).model_dump()
        return cls(**base, history=[HistoryPublic.model_validate(h) for h in t.history])


class TicketPage(BaseModel):
    items: list[TicketPublic]
    total: int
    limit: int
    offset: int


class ProblemPublic(BaseModel):
    detail: str
