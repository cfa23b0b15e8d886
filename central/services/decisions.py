"""Applying the planners' decision rules to a ticket: classification (category, queue, skills,
tags) then priority (scores into bands), each decision stored with the rule ids and the file
versions that made it, and a history entry. A priority a dispatcher set by hand is never
recomputed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from central.domain.lifecycle import Action
from central.services import history
from central.services.live_rules import DecisionRules
from central.services.tickets import Step, apply_step
from central.storage.models import Ticket, TicketDecision
from fieldloop.rules.conditions import normalise_facts
from fieldloop.rules.evaluate import decide_classification, decide_priority
from fieldloop.rules.files import RuleSet

RULES_ACTOR = "system:rules"
Matcher = Callable[[RuleSet, Mapping[str, Any]], list[str]]


def facts_for(ticket: Ticket, at: datetime) -> dict[str, Any]:
    """What the rules see of a ticket (field names as `fieldloop rules fields` lists them)."""
    raw: dict[str, Any] = {
        "title": ticket.title,
        "description": ticket.description,
        "location": ticket.location,
        "problem_type": ticket.problem_type,
        "urgency": ticket.urgency,
        "source": ticket.source,
        "site": ticket.site,
        "asset.id": ticket.asset_id,
        "fault.code": ticket.rule_id,
        "fault.severity": ticket.severity,
        "reopened": ticket.reopen_count > 0 if ticket.reopen_count is not None else False,
        "hour": at.hour,  # UTC until sites carry a time zone (the SLA issue's calendars)
        "weekday": at.isoweekday(),
    }
    return {k: v for k, v in raw.items() if v is not None}


def apply_rules(
    session: Session,
    ticket: Ticket,
    rules: DecisionRules,
    *,
    now: datetime,
    extra: Mapping[str, Any] | None = None,
    match: Matcher | None = None,
) -> None:
    """Classify and prioritise ``ticket`` in the caller's transaction (it holds the row).
    ``extra``: facts the ticket row does not keep (an edge event's kind, metric and value)."""
    if rules.classification is None and rules.priority is None:
        return
    match = match or rules.match
    suppressed: tuple[str, str] | None = None
    raw = facts_for(ticket, now)
    raw.update({k: v for k, v in (extra or {}).items() if v is not None})
    facts = normalise_facts(raw)
    data: dict[str, Any] = {"rules_version": rules.version}
    if rules.classification is not None:
        hits = match(rules.classification, facts)
        out = decide_classification(rules.classification, hits[:1])
        if out.category is not None:
            ticket.category = out.category
        if out.queue is not None:
            ticket.department = out.queue
        ticket.skills = [{"skill": s.skill, "level": s.level} for s in out.skills]
        ticket.tags = list(out.tags)
        if out.suppressed is not None and out.rule is not None:
            suppressed = (out.rule, out.suppressed)
        _record(session, ticket, now, "classification", rules.classification, hits[:1], out, raw)
        data["classification"] = {"rule": out.rule, "category": out.category, "queue": out.queue}
        raw = {**raw, "category": out.category, "queue": out.queue, "tags": list(out.tags)}
        facts = normalise_facts({k: v for k, v in raw.items() if v is not None})
    if rules.priority is not None and ticket.priority_source != "manual":
        hits = match(rules.priority, facts)
        pr = decide_priority(rules.priority, hits)
        if pr.priority is not None:
            ticket.priority = pr.priority
            ticket.priority_source = "rules"
        ticket.priority_score = pr.score
        _record(session, ticket, now, "priority", rules.priority, hits, pr, raw)
        data["priority"] = {"priority": pr.priority, "score": pr.score, "rules": list(hits)}
    ticket.rules_version = rules.version
    ticket.updated_at = now
    history.record(
        session,
        ticket,
        at=now,
        actor=RULES_ACTOR,
        action="classified",
        data=data,
    )
    if suppressed is not None:
        # a suppressing rule (test tickets, known noise) cancels it, saying which rule and why;
        # the record stays whole, and nobody is sent
        apply_step(
            session,
            ticket,
            Step(Action.cancel, reason=f"suppressed by rule {suppressed[0]}: {suppressed[1]}"),
            actor=RULES_ACTOR,
            now=now,
        )


def _record(
    session: Session,
    ticket: Ticket,
    now: datetime,
    kind: str,
    ruleset: RuleSet,
    hits: list[str],
    outcome: object,
    facts: dict[str, Any],
) -> None:
    session.add(
        TicketDecision(
            ticket_id=ticket.id,
            at=now,
            kind=kind,
            rules_file=ruleset.path.rsplit("/", 1)[-1],
            rules_version=ruleset.version,
            rule_ids=list(hits),
            outcome=_jsonable(asdict(outcome)),  # type: ignore[call-overload]
            facts=facts,
        )
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
