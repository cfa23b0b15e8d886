"""What edge events do to tickets, straight through ``ingest`` on SQLite and PostgreSQL: one open
ticket per (site, asset, rule) episode; a fault that clears before anyone is sent closes its
ticket by itself (and only then, and only when the policy says so); the same fault soon after a
close reopens that ticket, later it opens a new one, and a cancelled ticket is never reopened;
a redelivered event changes nothing. The history chain verifies after every scenario."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from central.domain.lifecycle import Action
from central.ingest.events import (
    RECOVERED_BEFORE_DISPATCH,
    SYSTEM_ACTOR,
    IngestOutcome,
    IngestPolicy,
    ingest,
)
from central.services.audit import verify
from central.services.tickets import Step, act
from central.storage.db import make_engine, migrate, session_factory
from central.storage.models import EdgeEvent, Ticket, TicketEvent
from fieldloop.messages import AckResult, Event, EventKind

pytestmark = pytest.mark.integration

SITE = "plant-1"
RULE = "chiller.discharge_temp.high"
OTHER_RULE = "chiller.suction_pressure.low"
OPEN, CLEAR = EventKind.fault_opened, EventKind.fault_cleared
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
WINDOW = timedelta(hours=24)


def event(
    kind: EventKind,
    seq: int,
    *,
    asset: str = "CH-01",
    rule: str = RULE,
    at: datetime | None = None,
) -> Event:
    """An event of the device that watches ``asset`` (one device per asset, as in site files)."""
    return Event(
        site=SITE,
        device=f"dev-{asset}",
        asset=asset,
        event_time=at or T0 + timedelta(seconds=seq),
        seq=seq,
        kind=kind,
        rule_id=rule,
        title="Discharge temperature high",
        location="Plant room B1",
        metric="discharge_temp",
        value=97.0 if kind is OPEN else 85.0,
        threshold=95.0,
        readings={"discharge_temp": 97.0 if kind is OPEN else 85.0},
    )


@dataclass(frozen=True)
class Seen:
    """A ticket and its history as read back from the database."""

    ticket: Ticket
    history: list[TicketEvent]

    def actions(self) -> list[str]:
        return [h.action for h in self.history]

    def entries(self, action: str) -> list[TicketEvent]:
        return [h for h in self.history if h.action == action]

    def chain(self) -> list[tuple[int, str]]:
        return [(h.seq, h.hash) for h in self.history]


class Db:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def ingest(
        self, ev: Event, received_at: datetime, policy: IngestPolicy | None = None
    ) -> IngestOutcome:
        if policy is None:
            return ingest(self.sessions, ev, received_at)
        return ingest(self.sessions, ev, received_at, policy)

    def seen(self, ticket_id: int | None) -> Seen:
        assert ticket_id is not None
        with self.sessions() as s:
            ticket = s.get(Ticket, ticket_id)
            assert ticket is not None
            history = list(
                s.execute(
                    select(TicketEvent)
                    .where(TicketEvent.ticket_id == ticket_id)
                    .order_by(TicketEvent.seq)
                ).scalars()
            )
            return Seen(ticket, history)

    def count(self, model: type, *where: Any) -> int:
        with self.sessions() as s:
            return s.execute(select(func.count()).select_from(model).where(*where)).scalar_one()

    def act(self, ticket_id: int | None, step: Step, actor: str, now: datetime) -> None:
        assert ticket_id is not None
        with self.sessions() as s, s.begin():
            act(s, ticket_id, step, caller=None, actor=actor, now=now)

    def dispatch(self, ticket_id: int | None, now: datetime, engineer: str = "eng.li") -> None:
        self.act(ticket_id, Step(Action.dispatch, engineer=engineer), "disp.zhao", now)

    def assert_audit_ok(self) -> None:
        with self.sessions() as s:
            report = verify(s)
        assert report.ok, [str(b) for b in report.broken]
        assert report.tickets == self.count(Ticket)
        assert report.entries == self.count(TicketEvent)


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    engine = make_engine(db_url)
    migrate(engine)
    try:
        yield Db(session_factory(engine))
    finally:
        engine.dispose()


# --- one open ticket per episode ------------------------------------------------------------


def test_a_second_opening_event_attaches_and_another_rule_or_asset_opens_another(db: Db) -> None:
    first = db.ingest(event(OPEN, 1), T0)
    assert first.result is AckResult.committed and first.created and first.ticket_id is not None

    again = db.ingest(event(OPEN, 2), T0 + timedelta(minutes=1))
    assert again.result is AckResult.committed
    assert again.ticket_id == first.ticket_id and not again.created and not again.reopened

    other_rule = db.ingest(event(OPEN, 3, rule=OTHER_RULE), T0 + timedelta(minutes=2))
    other_asset = db.ingest(event(OPEN, 1, asset="CH-02"), T0 + timedelta(minutes=3))
    assert other_rule.created and other_asset.created
    ids = {first.ticket_id, other_rule.ticket_id, other_asset.ticket_id}
    assert len(ids) == 3 and None not in ids
    assert db.count(Ticket) == 3

    seen = db.seen(first.ticket_id)
    t = seen.ticket
    assert (t.state, t.occurrences, t.fault_active) == ("new", 2, True)
    assert (t.site, t.asset_id, t.rule_id, t.source) == (SITE, "CH-01", RULE, "iot")
    assert t.open_episode_key == f"{SITE}|CH-01|{RULE}"
    assert seen.actions() == ["created", "fault_opened"]
    assert all(h.actor == SYSTEM_ACTOR for h in seen.history)
    assert db.seen(other_rule.ticket_id).ticket.open_episode_key == f"{SITE}|CH-01|{OTHER_RULE}"
    assert db.seen(other_asset.ticket_id).ticket.open_episode_key == f"{SITE}|CH-02|{RULE}"
    # every event is in the inbox, on its own episode's ticket
    with db.sessions() as s:
        on = dict(
            s.execute(
                select(EdgeEvent.seq, EdgeEvent.ticket_id).where(EdgeEvent.device == "dev-CH-01")
            ).all()
        )
    assert on == {1: first.ticket_id, 2: first.ticket_id, 3: other_rule.ticket_id}
    db.assert_audit_ok()


# --- recovered before dispatch --------------------------------------------------------------


def test_a_clear_before_dispatch_closes_the_ticket_as_recovered(db: Db) -> None:
    opened = db.ingest(event(OPEN, 1), T0)
    cleared_at = T0 + timedelta(minutes=5)
    cleared = db.ingest(event(CLEAR, 2), cleared_at)
    assert cleared.ticket_id == opened.ticket_id
    assert cleared.cleared and cleared.resolved

    seen = db.seen(opened.ticket_id)
    t = seen.ticket
    assert t.state == "closed"
    assert t.resolution == RECOVERED_BEFORE_DISPATCH == "recovered before dispatch"
    assert t.closed_at == cleared_at
    assert t.fault_active is False and t.fault_cleared_at == T0 + timedelta(seconds=2)
    assert t.open_episode_key is None  # the episode is over: its key is free again
    assert t.assignee is None
    [resolved] = seen.entries("auto_resolve")
    assert resolved.actor == SYSTEM_ACTOR
    assert (resolved.from_state, resolved.to_state) == ("new", "closed")
    assert resolved.note == RECOVERED_BEFORE_DISPATCH
    assert resolved.at == cleared_at
    assert seen.actions() == ["created", "fault_cleared", "auto_resolve"]
    db.assert_audit_ok()


def test_a_clear_after_dispatch_does_not_resolve_the_ticket(db: Db) -> None:
    opened = db.ingest(event(OPEN, 1), T0)
    db.dispatch(opened.ticket_id, T0 + timedelta(minutes=1))
    cleared = db.ingest(event(CLEAR, 2), T0 + timedelta(minutes=5))
    assert cleared.ticket_id == opened.ticket_id
    assert cleared.cleared and not cleared.resolved

    seen = db.seen(opened.ticket_id)
    t = seen.ticket
    assert (t.state, t.assignee) == ("dispatched", "eng.li")
    assert t.fault_active is False and t.fault_cleared_at == T0 + timedelta(seconds=2)
    assert t.resolution is None and t.closed_at is None
    assert t.open_episode_key == f"{SITE}|CH-01|{RULE}"  # still this episode's open ticket
    assert seen.actions() == ["created", "dispatch", "fault_cleared"]
    assert seen.entries("fault_cleared")[0].to_state == "dispatched"

    # and the fault coming back attaches to the same open ticket
    back = db.ingest(event(OPEN, 3), T0 + timedelta(minutes=7))
    assert back.ticket_id == opened.ticket_id and not back.reopened and not back.created
    assert db.seen(opened.ticket_id).ticket.fault_active is True
    assert db.count(Ticket) == 1
    db.assert_audit_ok()


def test_with_auto_resolve_off_a_clear_before_dispatch_resolves_nothing(db: Db) -> None:
    policy = IngestPolicy(auto_resolve=False)
    opened = db.ingest(event(OPEN, 1), T0, policy)
    cleared = db.ingest(event(CLEAR, 2), T0 + timedelta(minutes=5), policy)
    assert cleared.ticket_id == opened.ticket_id
    assert cleared.cleared and not cleared.resolved

    seen = db.seen(opened.ticket_id)
    t = seen.ticket
    assert (t.state, t.fault_active, t.resolution, t.closed_at) == ("new", False, None, None)
    assert t.fault_cleared_at == T0 + timedelta(seconds=2)
    assert "auto_resolve" not in seen.actions()
    assert seen.actions() == ["created", "fault_cleared"]
    db.assert_audit_ok()


# --- the reopen window ----------------------------------------------------------------------


def test_the_same_fault_within_the_window_reopens_the_closed_ticket(db: Db) -> None:
    policy = IngestPolicy(reopen_window=WINDOW)
    opened = db.ingest(event(OPEN, 1), T0, policy)
    closed_at = T0 + timedelta(minutes=5)
    db.ingest(event(CLEAR, 2), closed_at, policy)
    assert db.seen(opened.ticket_id).ticket.state == "closed"

    back_at = closed_at + WINDOW - timedelta(seconds=1)
    back = db.ingest(event(OPEN, 3, at=back_at), back_at, policy)
    assert back.ticket_id == opened.ticket_id
    assert back.reopened and not back.created and not back.resolved
    assert db.count(Ticket) == 1

    seen = db.seen(opened.ticket_id)
    t = seen.ticket
    assert (t.state, t.reopen_count, t.fault_active) == ("reopened", 1, True)
    assert t.closed_at is None and t.resolution is None and t.fault_cleared_at is None
    assert t.open_episode_key == f"{SITE}|CH-01|{RULE}"
    assert t.occurrences == 2
    [reopen] = seen.entries("reopen")
    assert reopen.actor == SYSTEM_ACTOR
    assert (reopen.from_state, reopen.to_state) == ("closed", "reopened")
    assert "reopen window" in reopen.data["reason"]
    assert reopen.at == back_at
    assert seen.actions() == ["created", "fault_cleared", "auto_resolve", "reopen", "fault_opened"]

    # while reopened it is the episode's open ticket: a further opening event attaches
    more = db.ingest(event(OPEN, 4), back_at + timedelta(minutes=1), policy)
    assert more.ticket_id == opened.ticket_id and not more.reopened
    assert db.seen(opened.ticket_id).ticket.reopen_count == 1
    db.assert_audit_ok()


def test_a_recurrence_that_clears_before_dispatch_closes_the_reopened_ticket_again(db: Db) -> None:
    opened = db.ingest(event(OPEN, 1), T0)
    db.ingest(event(CLEAR, 2), T0 + timedelta(minutes=5))
    db.ingest(event(OPEN, 3), T0 + timedelta(hours=1))
    again = db.ingest(event(CLEAR, 4), T0 + timedelta(hours=1, minutes=5))
    assert again.ticket_id == opened.ticket_id and again.resolved

    seen = db.seen(opened.ticket_id)
    assert (seen.ticket.state, seen.ticket.reopen_count) == ("closed", 1)
    assert seen.ticket.resolution == RECOVERED_BEFORE_DISPATCH
    assert [(h.from_state, h.to_state) for h in seen.entries("auto_resolve")] == [
        ("new", "closed"),
        ("reopened", "closed"),
    ]
    db.assert_audit_ok()


def test_a_worked_and_closed_ticket_is_reopened_by_the_same_fault_within_the_window(
    db: Db,
) -> None:
    opened = db.ingest(event(OPEN, 1), T0)
    tid = opened.ticket_id
    at = T0
    db.dispatch(tid, at := at + timedelta(minutes=1))
    for action in (Action.accept, Action.depart, Action.arrive, Action.start):
        db.act(tid, Step(action), "eng.li", at := at + timedelta(minutes=1))
    db.ingest(event(CLEAR, 2), at := at + timedelta(minutes=1))
    db.act(tid, Step(Action.complete, report="reset the controller"), "eng.li", at)
    db.act(tid, Step(Action.close, reason="customer unreachable"), "sup.wang", at)
    closed = db.seen(tid).ticket
    assert (closed.state, closed.closed_at, closed.open_episode_key) == ("closed", at, None)

    back_at = at + timedelta(hours=3)
    back = db.ingest(event(OPEN, 3, at=back_at), back_at)
    assert back.ticket_id == tid and back.reopened
    t = db.seen(tid).ticket
    assert (t.state, t.reopen_count, t.fault_active) == ("reopened", 1, True)
    assert db.count(Ticket) == 1
    db.assert_audit_ok()


def test_the_same_fault_after_the_window_opens_a_new_ticket(db: Db) -> None:
    policy = IngestPolicy(reopen_window=WINDOW)
    opened = db.ingest(event(OPEN, 1), T0, policy)
    closed_at = T0 + timedelta(minutes=5)
    db.ingest(event(CLEAR, 2), closed_at, policy)

    late_at = closed_at + WINDOW + timedelta(seconds=1)
    late = db.ingest(event(OPEN, 3, at=late_at), late_at, policy)
    assert late.created and not late.reopened
    assert late.ticket_id is not None and late.ticket_id != opened.ticket_id
    assert db.count(Ticket) == 2

    old = db.seen(opened.ticket_id)
    assert (old.ticket.state, old.ticket.reopen_count) == ("closed", 0)
    assert old.ticket.resolution == RECOVERED_BEFORE_DISPATCH
    assert "reopen" not in old.actions()
    new = db.seen(late.ticket_id).ticket
    assert (new.state, new.reopen_count, new.fault_active, new.occurrences) == ("new", 0, True, 1)
    assert new.open_episode_key == f"{SITE}|CH-01|{RULE}"
    db.assert_audit_ok()


def test_a_shorter_reopen_window_is_honoured(db: Db) -> None:
    policy = IngestPolicy(reopen_window=timedelta(minutes=10))
    opened = db.ingest(event(OPEN, 1), T0, policy)
    closed_at = T0 + timedelta(minutes=1)
    db.ingest(event(CLEAR, 2), closed_at, policy)
    # 11 minutes later: inside the default 24 h, outside this policy's 10 min
    late = db.ingest(event(OPEN, 3), closed_at + timedelta(minutes=11), policy)
    assert late.created and late.ticket_id != opened.ticket_id
    assert db.seen(opened.ticket_id).ticket.state == "closed"
    db.assert_audit_ok()


def test_a_cancelled_ticket_is_never_reopened(db: Db) -> None:
    opened = db.ingest(event(OPEN, 1), T0)
    db.act(
        opened.ticket_id,
        Step(Action.cancel, reason="sensor under calibration"),
        "sup.wang",
        T0 + timedelta(minutes=1),
    )
    cancelled = db.seen(opened.ticket_id).ticket
    assert (cancelled.state, cancelled.open_episode_key) == ("cancelled", None)

    again = db.ingest(event(OPEN, 2), T0 + timedelta(minutes=2))
    assert again.created and not again.reopened
    assert again.ticket_id is not None and again.ticket_id != opened.ticket_id

    old = db.seen(opened.ticket_id)
    assert (old.ticket.state, old.ticket.reopen_count) == ("cancelled", 0)
    assert old.actions() == ["created", "cancel"]
    new = db.seen(again.ticket_id).ticket
    assert (new.state, new.fault_active) == ("new", True)
    assert db.count(Ticket) == 2
    db.assert_audit_ok()


# --- exactly once ---------------------------------------------------------------------------


def test_an_opening_event_delivered_three_times_has_one_effect(db: Db) -> None:
    opening = event(OPEN, 1)
    first = db.ingest(opening, T0)
    before = db.seen(first.ticket_id)
    redeliveries = [db.ingest(opening, T0 + timedelta(seconds=n)) for n in (10, 20)]

    assert first.result is AckResult.committed and first.created
    assert [r.result for r in redeliveries] == [AckResult.duplicate] * 2
    assert {r.ticket_id for r in redeliveries} == {first.ticket_id}
    assert not any(r.created or r.cleared or r.resolved or r.reopened for r in redeliveries)
    assert db.count(Ticket) == 1
    assert db.count(EdgeEvent) == 1
    with db.sessions() as s:
        inbox = s.get(EdgeEvent, opening.id)
        assert inbox is not None
        assert (inbox.duplicates, inbox.ticket_id, inbox.received_at) == (2, first.ticket_id, T0)
    after = db.seen(first.ticket_id)
    assert after.chain() == before.chain()
    assert after.ticket.history_len == before.ticket.history_len == 1
    assert after.ticket.occurrences == 1 and after.ticket.updated_at == T0
    db.assert_audit_ok()


def test_a_clear_delivered_three_times_resolves_once(db: Db) -> None:
    opened = db.ingest(event(OPEN, 1), T0)
    clear = event(CLEAR, 2)
    first = db.ingest(clear, T0 + timedelta(minutes=1))
    before = db.seen(opened.ticket_id)
    again = [db.ingest(clear, T0 + timedelta(minutes=n)) for n in (2, 3)]

    assert first.resolved and [a.result for a in again] == [AckResult.duplicate] * 2
    assert not any(a.resolved or a.cleared for a in again)
    with db.sessions() as s:
        inbox = s.get(EdgeEvent, clear.id)
        assert inbox is not None and inbox.duplicates == 2
    after = db.seen(opened.ticket_id)
    assert after.chain() == before.chain()
    assert after.actions().count("auto_resolve") == 1
    assert after.ticket.state == "closed"
    assert db.count(EdgeEvent) == 2
    db.assert_audit_ok()


def test_a_clear_after_a_visited_job_was_transferred_is_not_recovered_before_dispatch(
    db: Db,
) -> None:
    opened = db.ingest(event(OPEN, 1), T0)
    tid = opened.ticket_id
    at = T0
    db.dispatch(tid, at := at + timedelta(minutes=1))
    for action in (Action.accept, Action.depart, Action.arrive, Action.start):
        db.act(tid, Step(action), "eng.li", at := at + timedelta(minutes=1))
    db.act(
        tid,
        Step(Action.transfer, department="electrical", reason="the breaker panel, not the chiller"),
        "disp.zhao",
        at := at + timedelta(minutes=1),
    )
    transferred = db.seen(tid)
    assert (transferred.ticket.state, transferred.ticket.assignee) == ("new", None)
    assert "dispatch" in transferred.actions() and "arrive" in transferred.actions()

    cleared = db.ingest(event(CLEAR, 2), at + timedelta(minutes=1))
    assert cleared.ticket_id == tid and cleared.cleared
    seen = db.seen(tid)
    db.assert_audit_ok()
    # an engineer was sent and on site: this is not "recovered before dispatch"
    assert not cleared.resolved
    assert (seen.ticket.state, seen.ticket.resolution) == ("new", None)
    assert "auto_resolve" not in seen.actions()


# --- several central replicas at once ---------------------------------------------------------


def test_the_same_event_from_concurrent_deliveries_has_one_effect(db: Db) -> None:
    opening = event(OPEN, 1)
    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(lambda n: db.ingest(opening, T0 + timedelta(seconds=n)), range(6)))
    assert sorted(o.result.value for o in outcomes) == ["committed"] + ["duplicate"] * 5
    assert len({o.ticket_id for o in outcomes}) == 1
    assert db.count(Ticket) == 1 and db.count(EdgeEvent) == 1
    with db.sessions() as s:
        inbox = s.get(EdgeEvent, opening.id)
        assert inbox is not None and inbox.duplicates == 5
    assert db.seen(outcomes[0].ticket_id).actions() == ["created"]
    db.assert_audit_ok()


def test_concurrent_opening_events_of_one_episode_make_one_ticket(db: Db) -> None:
    openings = [event(OPEN, seq) for seq in range(1, 7)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(
            pool.map(lambda ev: db.ingest(ev, T0 + timedelta(seconds=ev.seq)), openings)
        )
    assert all(o.result is AckResult.committed for o in outcomes)
    assert sum(o.created for o in outcomes) == 1
    assert len({o.ticket_id for o in outcomes}) == 1
    assert db.count(Ticket) == 1 and db.count(EdgeEvent) == 6
    seen = db.seen(outcomes[0].ticket_id)
    assert seen.ticket.occurrences == 6
    assert sorted(seen.actions()) == ["created"] + ["fault_opened"] * 5
    db.assert_audit_ok()
