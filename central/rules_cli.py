"""`fieldloop rules explain` and `fieldloop rules replay`: what the planners' rules decided for a
ticket and why, and what a changed rule set would decide differently. Both only read."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from central.storage.db import make_engine, session_factory
from central.storage.models import Ticket, TicketDecision
from fieldloop.rules.conditions import All, Always, AnyOf, Node, Not, Test
from fieldloop.rules.files import RuleSet, load_ruleset
from fieldloop.rules.replay import (
    Report,
    RuleSets,
    facts_of_events,
    fails,
    load_sets,
    parse_fail_if,
    replay,
    sets_at_git_ref,
)
from fieldloop.yamlfile import FileError


def describe(node: Node) -> str:
    """A condition in words a planner reads back."""
    if isinstance(node, Test):
        value = node.value
        shown = ", ".join(map(str, value)) if isinstance(value, tuple) else str(value)
        return f"{node.field} {node.op.replace('_', ' ')} {shown}"
    if isinstance(node, All):
        return " and ".join(f"({describe(c)})" for c in node.children)
    if isinstance(node, AnyOf):
        return " or ".join(f"({describe(c)})" for c in node.children)
    if isinstance(node, Not):
        return f"not ({describe(node.child)})"
    assert isinstance(node, Always)
    return "always (catch-all)"


def _current(rules_dir: Path, filename: str, version: str) -> RuleSet | None:
    path = rules_dir / filename
    try:
        rs = load_ruleset(path)
    except (FileError, OSError):
        return None
    return rs if rs.version == version else None


def explain(args: argparse.Namespace) -> int:
    engine = make_engine(args.db)
    try:
        with session_factory(engine)() as session:
            ticket = session.get(Ticket, args.ticket)
            if ticket is None:
                print(f"fieldloop rules explain: no ticket #{args.ticket} in {args.db}",
                      file=sys.stderr)  # fmt: skip
                return 2
            rows = list(
                session.execute(
                    select(TicketDecision)
                    .where(TicketDecision.ticket_id == ticket.id)
                    .order_by(TicketDecision.id)
                ).scalars()
            )
    except SQLAlchemyError as exc:
        print(f"fieldloop rules explain: cannot read {args.db}: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(f"ticket #{ticket.id}: {ticket.title}")
    print(
        f"  category {ticket.category}, queue {ticket.department}, priority {ticket.priority} "
        f"({ticket.priority_source or 'unknown'}), dispatch policy {ticket.dispatch_policy}, "
        f"SLA policy {ticket.sla_policy}, rules version {ticket.rules_version}"
    )
    if not rows:
        print("  no rule decided anything for this ticket (no rules were live when it came in)")
        return 0
    for d in rows:
        print(f"\n{d.kind}: {d.rules_file} @ {d.rules_version[:12]}, {d.at:%Y-%m-%d %H:%M:%S} UTC")
        live = _current(Path(args.rules), d.rules_file, d.rules_version)
        by_id = {r.id: r for r in live.rules} if live else {}
        for rid in d.rule_ids:
            rule = by_id.get(rid)
            why = f": {describe(rule.condition)}" if rule else ""
            print(f"  rule {rid}{why}")
        if not d.rule_ids:
            print("  no rule matched")
        if live is None:
            print("  (that version of the file is no longer on disk: rule texts not shown)")
        outcome = {k: v for k, v in d.outcome.items() if v not in (None, [], (), "")}
        print(f"  decided: {json.dumps(outcome, ensure_ascii=False)}")
    print(f"\nfacts the rules saw: {json.dumps(rows[0].facts, ensure_ascii=False)}")
    return 0


def _recorded(args: argparse.Namespace) -> Iterable[tuple[str, Mapping[str, Any]]]:
    if args.events:
        path = Path(args.events)
        with path.open(encoding="utf-8") as f:
            yield from facts_of_events(f, str(path), args.timezone)
        return
    from central.services.replay_source import recorded_tickets

    engine = make_engine(args.db)
    try:
        with session_factory(engine)() as session:
            yield from recorded_tickets(session, timezone=args.timezone)
    finally:
        engine.dispose()


def _print(report: Report, base: RuleSets, cand: RuleSets, limit: int) -> None:
    for c in report.changes[:limit]:
        parts = []
        for name in c.fields:
            parts.append(f"{name} {getattr(c.base, name)} -> {getattr(c.candidate, name)}")
        print(f"CHANGED {c.ref}: " + ", ".join(parts)
              + f"  [rule {c.base.rule} -> {c.candidate.rule}; priority rules "
              f"{','.join(c.base.priority_rules) or '-'} -> "
              f"{','.join(c.candidate.priority_rules) or '-'}]")  # fmt: skip
    if len(report.changes) > limit:
        print(f"... and {len(report.changes) - limit} more")
    by = ", ".join(f"{k} {v}" for k, v in sorted(report.by_field.items())) or "nothing"
    print(
        f"replay: {report.total} recorded, {len(report.changes)} changed "
        f"({report.changed_share:.1%}; {by}); base {base.label}, candidate {cand.label}"
    )


def replay_cmd(args: argparse.Namespace, repo: Path) -> int:
    if bool(args.db) == bool(args.events):
        print("fieldloop rules replay: give exactly one of --db URL or --events FILE.jsonl",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        rule = parse_fail_if(args.fail_if) if args.fail_if else None
        cand = load_sets(str(args.candidate), Path(args.candidate))
        base_dir = Path(args.base)
        if base_dir.is_dir():
            base = load_sets(str(base_dir), base_dir)
        else:
            with tempfile.TemporaryDirectory(prefix="fieldloop-base-") as tmp:
                base = sets_at_git_ref(args.base, repo, "rules", Path(tmp))
        report = replay(base, cand, _recorded(args))
    except FileError as exc:
        print(f"fieldloop rules replay: a rule file is wrong:\n{exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError, SQLAlchemyError) as exc:
        print(f"fieldloop rules replay: {exc}", file=sys.stderr)
        return 2
    _print(report, base, cand, args.show)
    if rule is not None and fails(report, rule):
        print(f"FAILED: {args.fail_if}")
        return 1
    return 0
