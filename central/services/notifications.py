"""The notification outbox: a message to an engineer, a role or a system is a row written in
the same transaction as what caused it, so it is sent if and only if that change committed.
Delivery (MQTT, webhooks) reads the pending rows after commit and retries until delivered;
the mobile app's SSE stream and ``GET /me/notifications`` read the same rows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from central.storage.models import Notification

#: roles a notification may be addressed to (a username otherwise)
ROLE_RECIPIENTS = frozenset(
    {"role:dispatcher", "role:supervisor", "role:service_director", "role:customer_service"}
)
MAX_BACKOFF = timedelta(minutes=10)


def enqueue(
    session: Session,
    *,
    kind: str,
    recipient: str,
    now: datetime,
    ticket_id: int | None = None,
    payload: dict[str, Any] | None = None,
) -> Notification:
    row = Notification(
        created_at=now,
        kind=kind,
        recipient=recipient,
        ticket_id=ticket_id,
        payload=payload or {},
        attempts=0,
        next_attempt_at=now,
    )
    session.add(row)
    return row


def due(session: Session, now: datetime, limit: int = 100) -> list[Notification]:
    """Undelivered rows whose next attempt is due, locked so two central processes never send
    the same row at once (SKIP LOCKED: each takes different rows; SQLite has one writer)."""
    q = (
        select(Notification)
        .where(
            Notification.delivered_at.is_(None),
            # never tried: due at once, whatever clock wrote it
            or_(Notification.attempts == 0, Notification.next_attempt_at <= now),
        )
        .order_by(Notification.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    return list(session.execute(q).scalars())


def delivered(session: Session, ids: list[int], now: datetime) -> None:
    if ids:
        session.execute(
            update(Notification).where(Notification.id.in_(ids)).values(delivered_at=now)
        )


def lease(rows: list[Notification], now: datetime, hold: timedelta) -> None:
    """Mark ``rows`` as being sent by this process: nobody else takes them until ``hold`` has
    passed (a sender killed mid-send leaves them to be sent again then)."""
    for r in rows:
        r.attempts += 1
        r.next_attempt_at = now + hold


def failed(session: Session, row: Notification, error: str, now: datetime) -> None:
    """Try again later: 1 s, 2 s, 4 s ... up to every 10 minutes (``attempts`` counts the
    lease that tried)."""
    row.last_error = error[:2000]
    row.next_attempt_at = now + min(timedelta(seconds=2 ** min(row.attempts - 1, 10)), MAX_BACKOFF)


def for_recipient(
    session: Session, recipients: list[str], *, after_id: int = 0, limit: int = 100
) -> list[Notification]:
    """What an engineer's app shows: their own and their role's messages, oldest first."""
    return list(
        session.execute(
            select(Notification)
            .where(Notification.recipient.in_(recipients), Notification.id > after_id)
            .order_by(Notification.id)
            .limit(limit)
        ).scalars()
    )
