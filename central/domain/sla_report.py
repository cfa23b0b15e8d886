"""The overdue root-cause report: for every breached or at-risk ticket, where its time went
(business time by stage, department and person, the pauses and the stage that consumed the
budget), and for a period the stages, departments and blocking reasons that recur among them.
Pure: it is given the tickets' clocks, already computed from their logs."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from central.domain.sla_clock import SlaView

AT_RISK = 0.9  # a running promise with this share of its time used is reported as at risk


@dataclass(frozen=True)
class TicketFacts:
    id: int
    title: str
    priority: str | None
    policy: str
    department: str | None
    created_at: datetime
    view: SlaView
    now: datetime  # when the view was computed: an open pause runs to here


@dataclass(frozen=True)
class TicketCause:
    id: int
    title: str
    priority: str | None
    policy: str
    status: str  # breached | at_risk
    breached: tuple[str, ...]  # the promises broken (response, arrival, resolution)
    worst_stage: str | None  # the stage that used most of its budget
    stages: dict[str, float]  # stage -> business seconds
    departments: dict[str, float]
    people: dict[str, float]
    pauses: dict[str, float]  # reason -> seconds paused


@dataclass
class Report:
    start: datetime
    end: datetime
    tickets: int = 0
    overdue: list[TicketCause] = field(default_factory=list)
    stages: dict[str, int] = field(default_factory=dict)  # worst stage -> tickets
    departments: dict[str, float] = field(default_factory=dict)  # business seconds held
    reasons: dict[str, float] = field(default_factory=dict)  # blocking reason -> seconds
    people: dict[str, float] = field(default_factory=dict)

    def top(self, what: dict[str, float] | dict[str, int], n: int = 5) -> list[tuple[str, float]]:
        return sorted(what.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def _cause(t: TicketFacts) -> TicketCause | None:
    promises = [c for c in t.view.clocks if not c.name.startswith("stage.")]
    breached = tuple(c.name for c in promises if c.breached)
    at_risk = any(c.status == "running" and c.used >= AT_RISK for c in promises)
    if not breached and not at_risk:
        return None
    stages: dict[str, float] = {}
    departments: dict[str, float] = {}
    people: dict[str, float] = {}
    for s in t.view.shares:
        stages[s.stage] = stages.get(s.stage, 0.0) + s.seconds
        dept = s.department or t.department or "-"
        departments[dept] = departments.get(dept, 0.0) + s.seconds
        people[s.who] = people.get(s.who, 0.0) + s.seconds
    pauses: dict[str, float] = {}
    for p in t.view.pauses:
        end = p.end or t.now
        pauses[p.reason] = pauses.get(p.reason, 0.0) + (end - p.start).total_seconds()
    return TicketCause(
        id=t.id, title=t.title, priority=t.priority, policy=t.policy,
        status="breached" if breached else "at_risk", breached=breached,
        worst_stage=t.view.worst, stages=stages, departments=departments, people=people,
        pauses=pauses,
    )  # fmt: skip


def summarise(tickets: Iterable[TicketFacts], start: datetime, end: datetime) -> Report:
    report = Report(start, end)
    for t in tickets:
        report.tickets += 1
        cause = _cause(t)
        if cause is None:
            continue
        report.overdue.append(cause)
        if cause.worst_stage:
            report.stages[cause.worst_stage] = report.stages.get(cause.worst_stage, 0) + 1
        for k, v in cause.departments.items():
            report.departments[k] = report.departments.get(k, 0.0) + v
        for k, v in cause.people.items():
            report.people[k] = report.people.get(k, 0.0) + v
        for k, v in cause.pauses.items():
            report.reasons[k] = report.reasons.get(k, 0.0) + v
    return report


def _hours(report: Report, what: dict[str, float], key: str) -> list[dict[str, object]]:
    return [{key: k, "hours": round(v / 3600, 2)} for k, v in report.top(what)]


def as_json(report: Report) -> dict[str, object]:
    return {
        "from": report.start.isoformat(),
        "to": report.end.isoformat(),
        "tickets": report.tickets,
        "overdue": len([c for c in report.overdue if c.status == "breached"]),
        "at_risk": len([c for c in report.overdue if c.status == "at_risk"]),
        "top_stages": [{"stage": k, "tickets": v} for k, v in report.top(report.stages)],
        "top_departments": _hours(report, report.departments, "department"),
        "top_blocking_reasons": _hours(report, report.reasons, "reason"),
        "top_people": _hours(report, report.people, "who"),
        "tickets_detail": [
            {
                "ticket": c.id, "title": c.title, "priority": c.priority, "policy": c.policy,
                "status": c.status, "breached": list(c.breached), "worst_stage": c.worst_stage,
                "stage_hours": {k: round(v / 3600, 2) for k, v in c.stages.items()},
                "department_hours": {k: round(v / 3600, 2) for k, v in c.departments.items()},
                "people_hours": {k: round(v / 3600, 2) for k, v in c.people.items()},
                "paused_hours": {k: round(v / 3600, 2) for k, v in c.pauses.items()},
            }
            for c in report.overdue
        ],
    }  # fmt: skip


def as_csv(report: Report) -> str:
    """One row per breached or at-risk ticket, for a spreadsheet."""
    out = io.StringIO()
    w = csv.writer(out)
    header = ["ticket", "title", "priority", "policy", "status", "breached", "worst_stage",
              "stage_hours", "department_hours", "people_hours", "paused_hours"]  # fmt: skip
    w.writerow(header)

    def cell(d: dict[str, float]) -> str:
        return "; ".join(f"{k}={v / 3600:.2f}" for k, v in sorted(d.items()))

    for c in report.overdue:
        row = [c.id, c.title, c.priority or "", c.policy, c.status, " ".join(c.breached),
               c.worst_stage or "", cell(c.stages), cell(c.departments), cell(c.people),
               cell(c.pauses)]  # fmt: skip
        w.writerow(row)
    return out.getvalue()
