"""API schemas per resource: what clients may send (…In) and what they get back (…Public).
Server-owned fields (state, ids, times, hashes) never appear in an input schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from central.domain.intake import refuse_nul
from central.domain.lifecycle import STATE_LABELS, Action, State, allowed_actions
from central.domain.permissions import Caller, Role, actions_for
from central.storage.models import PartUsed, Ticket


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    _no_nul = field_validator("*", mode="before")(classmethod(lambda cls, v: refuse_nul(v)))


class GpsIn(_In):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accuracy_m: float | None = Field(None, ge=0, le=100_000)


class StepIn(_In):
    """What every action may carry: a note and where the caller is (the app sends GPS)."""

    note: str | None = Field(None, max_length=4000)
    location: GpsIn | None = None


class ReasonIn(StepIn):
    reason: str = Field(min_length=1, max_length=2000, description="why (kept in the record)")


class DispatchIn(StepIn):
    engineer: str = Field(min_length=1, max_length=128, description="who is offered the job")
    reason: str | None = Field(
        None, max_length=2000, description="required for an override (a supervisor's)"
    )


class TransferIn(ReasonIn):
    department: str = Field(min_length=1, max_length=64, description="where the job goes")


class PartIn(_In):
    part_no: str = Field(min_length=1, max_length=64)
    description: str | None = Field(None, max_length=255)
    quantity: float = Field(1, gt=0, le=1_000_000)
    unit: str = Field("pcs", min_length=1, max_length=16)


class WaitPartsIn(StepIn):
    parts: list[PartIn] = Field(min_length=1, max_length=100, description="what is awaited")


class PartsIn(_In):
    parts: list[PartIn] = Field(min_length=1, max_length=100)


class CompleteIn(StepIn):
    report: str = Field(min_length=1, max_length=20_000, description="what was found and done")
    signature_sha256: str | None = Field(
        None,
        pattern="^[0-9a-f]{64}$",
        description="the customer's signature, uploaded first as an attachment of kind signature",
    )


class CloseIn(StepIn):
    reason: str | None = Field(
        None, max_length=2000, description="required when the customer has not confirmed"
    )


class NoteIn(_In):
    text: str = Field(min_length=1, max_length=4000)


class RatingIn(_In):
    score: int = Field(ge=1, le=5, description="1 (poor) to 5 (excellent)")
    comment: str | None = Field(None, max_length=2000)


class PartPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    part_no: str
    description: str | None
    quantity: float
    unit: str
    recorded_by: str
    recorded_at: datetime

    @classmethod
    def of(cls, p: PartUsed) -> PartPublic:
        return cls.model_validate(p)


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
    allowed_actions: list[Action] = Field(description="what the lifecycle allows now")
    your_actions: list[Action] = Field(description="of those, what the caller may do")
    source: str
    title: str
    description: str
    category: str | None
    priority: str | None
    priority_source: str | None = Field(description="intake, rules or manual (never recomputed)")
    priority_score: int | None
    tags: list[str]
    skills: list[dict[str, Any]] = Field(description="needed skills: {skill, level}")
    dispatch_policy: str | None = Field(description="chosen by rules/dispatch.yaml")
    offered_to: list[str] = Field(description="engineers holding an open offer (first wins)")
    needs_dispatcher: bool = Field(description="waiting in the dispatcher's queue")
    sla_policy: str | None = Field(description="chosen by rules/sla.yaml")
    rules_version: str | None
    parent_id: int | None = Field(description="the ticket whose rule opened this follow-up")
    severity: str | None
    location: str | None
    problem_type: str | None
    urgency: str | None
    reporter: str | None
    contact: str | None
    department: str | None
    transfers: int
    reopen_count: int
    resolution: str | None
    completion_report: str | None
    signature_sha256: str | None
    csat_score: int | None
    csat_comment: str | None
    verified_at: datetime | None
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
    def of(cls, t: Ticket, caller: Caller | None = None) -> TicketPublic:
        state = State(t.state)
        copied = {f: getattr(t, f) for f in TicketPublic.model_fields if f not in _DERIVED}
        now = allowed_actions(state)
        mine = (
            []
            if caller is None
            else actions_for(
                caller, assignee=t.assignee, reporter=t.reporter_user, offered_to=t.offered_to or ()
            )
        )
        if state is State.dispatched and (caller is None or caller.role is not Role.supervisor):
            mine = [a for a in mine if a is not Action.dispatch]  # moving an offer: an override
        return cls(
            **copied,
            state=StateLabel.of(state),
            allowed_actions=now,
            your_actions=[a for a in now if a in mine],
        )


_DERIVED = frozenset({"state", "allowed_actions", "your_actions"})


class StageTime(BaseModel):
    state: StateLabel
    seconds: float
    visits: int


class TicketDetail(TicketPublic):
    history: list[HistoryPublic]
    parts: list[PartPublic]
    stages: list[StageTime] = Field(description="time spent in each state so far")

    @classmethod
    def of_full(
        cls,
        t: Ticket,
        caller: Caller | None,
        parts: list[PartUsed],
        stages: list[tuple[State, float, int]],
    ) -> TicketDetail:
        base = TicketPublic.of(t, caller).model_dump()
        return cls(
            **base,
            history=[HistoryPublic.model_validate(h) for h in t.history],
            parts=[PartPublic.of(p) for p in parts],
            stages=[
                StageTime(state=StateLabel.of(s), seconds=secs, visits=n) for s, secs, n in stages
            ],
        )


class Created(BaseModel):
    ticket: TicketPublic
    follow_url: str = Field(description="the customer's private link; shown only now")


class LinkPublic(BaseModel):
    follow_url: str


class TicketPage(BaseModel):
    items: list[TicketPublic]
    total: int
    limit: int
    offset: int


class ProblemPublic(BaseModel):
    detail: str
