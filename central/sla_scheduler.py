"""The SLA scheduler of a central process: fires due warnings and escalations, and watches the
stages' overdue rates for the hand-off circuit breaker.

Several central processes may run it against one PostgreSQL: due times are compared with the
database's clock, a ticket being worked on by another process is skipped (SKIP LOCKED), and a
timer fires in the same transaction that marks it fired — so each fires exactly once, and a
process killed mid-sweep leaves its uncommitted work to the others."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from central.delivery import Sweeps
from central.services import notifications, sla
from central.services.live_rules import LiveRules
from fieldloop.rules.policies import Handoffs

log = logging.getLogger("fieldloop.central.sla")


class SlaScheduler(Sweeps):
    def __init__(
        self,
        sessions: sessionmaker[Session],
        rules: LiveRules | None = None,
        *,
        every: float = 1.0,
        rates_every: float = 60.0,
        who: str = sla.WHO,
        batch: int = 25,
    ) -> None:
        super().__init__()
        self.batch = batch
        self.sessions = sessions
        self.rules = rules
        self.every = every
        self.rates_every = rates_every
        self.who = who
        self.fired = 0

    def sweep(self, now: datetime | None = None, limit: int = 500) -> int:
        """One pass: every ticket with a timer due, in batches of tickets per transaction."""
        with self._sweeping:
            return 0 if self.stopping.is_set() else self._sweep(now, limit)

    def _sweep(self, now: datetime | None, limit: int) -> int:
        with self.sessions() as s, s.begin():
            at = now or sla.db_now(s, datetime.now(UTC))
            due = sla.due_tickets(s, at, limit)
        n = 0
        # several tickets per transaction (one commit, one flush of the log's hash chains); a
        # batch that fails is retried one ticket at a time, so one bad ticket delays no other
        for i in range(0, len(due), self.batch):
            if self.stopping.is_set():
                break
            chunk = due[i : i + self.batch]
            try:
                n += self._fire(chunk, now)
            except OperationalError:
                for tid in chunk:
                    try:
                        n += self._fire([tid], now)
                    except OperationalError as exc:  # a lock or a deadlock timeout
                        log.warning("SLA timers of ticket #%d not fired this time: %s", tid, exc)
        self.fired += n
        return n

    def _fire(self, tickets: list[int], now: datetime | None) -> int:
        with self.sessions() as s, s.begin():
            at = now or sla.db_now(s, datetime.now(UTC))
            return sum(len(sla.fire_due(s, tid, at, self.who)) for tid in tickets)

    def handoffs(self) -> Handoffs:
        return sla.handoffs_of(self.rules.current if self.rules is not None else None)

    def check_rates(self, now: datetime | None = None) -> list[str]:
        """A stage overdue too often over the window alerts the named role, once per stage
        and day (the alert's key is claimed in the database, so once across processes)."""
        with self._sweeping:
            return [] if self.stopping.is_set() else self._check_rates(now)

    def _check_rates(self, now: datetime | None) -> list[str]:
        h = self.handoffs()
        raised = []
        with self.sessions() as s, s.begin():
            at = now or sla.db_now(s, datetime.now(UTC))
            for stage, (late, total) in sorted(
                sla.overdue_rates(s, at - timedelta(seconds=h.window), at).items()
            ):
                if total < h.min_tickets or late * 100 < h.stage_overdue_rate * total:
                    continue
                key = f"overdue:{stage}:{at.date().isoformat()}"
                data = {"stage": stage, "late": late, "total": total, "rate": late / total}
                if sla.alert_once(s, key, at, data):
                    notifications.enqueue(
                        s, kind="circuit_breaker", recipient=f"role:{h.escalate_to}", now=at,
                        payload={"why": f"stage {stage} overdue on {late} of {total} tickets "
                                 f"({late / total:.0%}) over the last {h.window / 86400:g} days",
                                 **data},
                    )  # fmt: skip
                    raised.append(key)
        return raised

    async def run(self) -> None:
        since_rates = 0.0
        while True:
            try:
                await asyncio.to_thread(self.sweep)
                since_rates += self.every
                if since_rates >= self.rates_every:
                    since_rates = 0.0
                    await asyncio.to_thread(self.check_rates)
            except SQLAlchemyError as exc:
                log.warning("SLA sweep failed, will retry: %s", exc)
            await asyncio.sleep(self.every)
