"""Applying the planners' decision rules to a ticket: classification (category, queue, skills,
tags), priority (scores into bands), then the dispatch and SLA policies, each decision stored
with the rule ids and the file versions that made it, and a history entry. A priority a
dispatcher set by hand is never recomputed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from central.domain.lifecycle import Action, State
from central.services import history, notifications, sla
from central.services.live_rules import DecisionRules
from central.services.placeholders import placeholders
from central.services.tickets import Step, apply_step
from central.storage.models import Ticket, TicketDecision
from fieldloop.rules.actions import FollowUp, render
from fieldloop.rules.conditions import normalise_facts
from fieldloop.rules.evaluate import decide_classification, decide_policy, decide_priority
from fieldloop.rules.files import RuleSet

RULES_ACTOR = "system:rules"
Matcher = Callable[[RuleSet, Mapping[str, Any]], list[str]]


def facts_for(ticket: Ticket, at: datetime, timezone: str = "UTC") -> dict[str, Any]:
    """What the rules see of a ticket (field names as `fieldloop rules fields` lists them);
    ``hour`` and ``weekday`` are local time in the sites' ``timezone``."""
    local = at.astimezone(ZoneInfo(timezone))
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
        "hour": local.hour,
        "weekday": local.isoweekday(),
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
    """Classify and prioritise ``ticket`` in the caller's transaction (it holds the row), then
    choose its dispatch and SLA policies and open any follow-up job a rule asks for.
    ``extra``: facts the ticket row does not keep (an edge event's kind, metric and value)."""
    if not rules.sets:
        return
    match = match or rules.match
    suppressed: tuple[str, str] | None = None
    follow_ups: list[tuple[str, FollowUp]] = []
    messages: list[tuple[str, str, str, str]] = []  # (notify|escalate, rule, to, text)
    raw = facts_for(ticket, now, rules.timezone)
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
        if out.rule is not None:
            follow_ups += [(out.rule, f) for f in out.open_tickets]
            messages += [("notify", out.rule, to, text) for to, text in out.notify]
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
        by_id = {r.id: r for r in rules.priority.rules}
        for rid in hits:
            for a in by_id[rid].actions:
                if a.name == "open_ticket":
                    follow_ups.append((rid, a.value))
                elif a.name in ("notify", "escalate"):
                    messages.append((a.name, rid, *a.value))
        _record(session, ticket, now, "priority", rules.priority, hits, pr, raw)
        data["priority"] = {"priority": pr.priority, "score": pr.score, "rules": list(hits)}
    if suppressed is None:
        data.update(_choose_policies(session, ticket, rules, now, raw, match))
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
    sla.refresh(session, ticket, now)
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
        return
    for rule_id, follow in follow_ups:
        open_follow_up(session, ticket, rules, follow, rule_id=rule_id, now=now, match=match)
    _tell(session, ticket, messages, now)


#: a rule's `notify.to` that names one of these is a role; anything else is a party outside
#: (the gas company, a lift contractor) reached through the notification webhooks
_ROLES = frozenset({"dispatcher", "supervisor", "service_director", "customer_service",
                    "planner"})  # fmt: skip


def _tell(
    session: Session, ticket: Ticket, messages: list[tuple[str, str, str, str]], now: datetime
) -> None:
    """Send what the rules said to say (notify, escalate), with the placeholders filled in."""
    values = placeholders(ticket)
    for kind, rule_id, to, text in messages:
        recipient = (
            (ticket.assignee or "role:dispatcher") if to == "assignee"
            else f"role:{to}" if to in _ROLES else to
        )  # fmt: skip
        body = render(text, values)
        notifications.enqueue(
            session, kind=f"rule_{kind}", recipient=recipient, now=now, ticket_id=ticket.id,
            payload={"ticket": ticket.id, "title": ticket.title, "rule": rule_id,
                     "message": body, "priority": ticket.priority},
        )  # fmt: skip
        if kind == "escalate":
            history.record(session, ticket, at=now, actor=RULES_ACTOR, action="escalated",
                           note=body, data={"to": recipient, "rule": rule_id})  # fmt: skip


def _choose_policies(
    session: Session,
    ticket: Ticket,
    rules: DecisionRules,
    now: datetime,
    raw: Mapping[str, Any],
    match: Matcher,
) -> dict[str, Any]:
    """dispatch.yaml and sla.yaml pick a policy each from the decided ticket (its priority,
    category, tags); the choice is pinned on the ticket with the rules version."""
    raw = {**raw, "priority": ticket.priority, "category": ticket.category,
           "queue": ticket.department, "tags": list(ticket.tags or [])}  # fmt: skip
    facts = normalise_facts({k: v for k, v in raw.items() if v is not None})
    data: dict[str, Any] = {}
    for kind, ruleset in (("dispatch", rules.dispatch), ("sla", rules.sla)):
        if ruleset is None:
            continue
        hits = match(ruleset, facts)[:1]
        choice = decide_policy(ruleset, hits)
        setattr(ticket, f"{kind}_policy", choice.policy)
        _record(session, ticket, now, kind, ruleset, hits, choice, dict(raw))
        data[kind] = {"policy": choice.policy, "rule": choice.rule}
    if ticket.sla_policy:
        sla.attach(session, ticket, rules, now)
    return data


def open_follow_up(
    session: Session,
    parent: Ticket,
    rules: DecisionRules,
    follow: FollowUp,
    *,
    rule_id: str,
    now: datetime,
    match: Matcher | None = None,
) -> Ticket:
    """A second job beside ``parent`` (open_ticket): classified by the action itself, so no
    classification or priority rule runs on it and a rule can never open tickets in a loop;
    its dispatch and SLA policies are chosen like any ticket's."""
    values = placeholders(parent)
    title = render(follow.title, values)[:200]
    description = (
        render(follow.description, values)
        if follow.description
        else f"Opened by rule {rule_id} for ticket #{parent.id}: {parent.title}"
    )
    child = Ticket(
        state=State.new.value,
        state_entered_at=now,
        source="rules",
        title=title,
        description=description,
        category=follow.category,
        department=follow.queue,
        priority=follow.priority or parent.priority,
        priority_source="rules",
        location=parent.location,
        site=parent.site,
        asset_id=parent.asset_id,
        reporter=RULES_ACTOR,
        parent_id=parent.id,
        tags=["follow-up"],
        skills=[],
        fault_active=False,
        occurrences=1,
        readings={},
        created_at=now,
        updated_at=now,
    )
    session.add(child)
    history.append(
        session, child, at=now, actor=RULES_ACTOR, action="created", from_state=None,
        to_state=State.new.value, note=f"follow-up of #{parent.id}, opened by rule {rule_id}",
        data={"channel": "rules", "parent": parent.id, "rule": rule_id},
    )  # fmt: skip
    data = _choose_policies(session, child, rules, now, {"source": "rules"}, match or rules.match)
    child.rules_version = rules.version
    if data:
        history.record(session, child, at=now, actor=RULES_ACTOR, action="classified",
                       data={"rules_version": rules.version, **data})  # fmt: skip
    history.record(
        session, parent, at=now, actor=RULES_ACTOR, action="follow_up_opened",
        note=f"rule {rule_id} opened #{child.id}: {title}",
        data={"ticket": child.id, "rule": rule_id},
    )  # fmt: skip
    return child


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
