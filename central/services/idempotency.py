"""Idempotency keys in the database (Stripe's semantics), without anything of HTTP.

A caller's first request with a key claims it: a row with no status yet and a lock that runs out
after ``LOCK_FOR``. The request's effect and its response are then written in one transaction,
so a crash leaves either both or neither. A retry with the same key and the same request gets
the stored response back; the same key on a different request is a mistake the caller hears
about; a retry while the first is still running is told to wait; and a claim whose lock ran out
(its process died) is taken over by exactly one retry. Keys are scoped by principal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Executable, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from central.storage.db import lazy_transaction
from central.storage.models import IdempotencyKey

LOCK_FOR = timedelta(seconds=60)  # how long a claim holds before a retry may take it over
KEEP_FOR = timedelta(hours=24)  # how long a key is remembered (see purge_expired)


def fingerprint(method: str, path: str, body: bytes) -> str:
    """sha256 (hex) of the request as sent: method, path (with its query, if the caller wants
    it to count) and the body byte for byte. Each part is length-prefixed, so no two different
    requests can run together into the same bytes."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), body):
        digest.update(b"%d:" % len(part))
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True)
class Claimed:
    """This request owns the key: run it, then ``record`` (or ``release``) with this claim."""

    key_id: int
    locked_until: datetime  # the lock value we set; it proves the claim is still ours


@dataclass(frozen=True)
class Replay:
    """The key's request already finished: answer with what it answered."""

    status_code: int
    body: bytes


@dataclass(frozen=True)
class Mismatch:
    """The key was first used for a different request."""


@dataclass(frozen=True)
class InProgress:
    """Another request with this key is running (or just took over a dead one's claim)."""


ClaimResult = Claimed | Replay | Mismatch | InProgress


def claim(
    sessions: sessionmaker[Session],
    *,
    principal: str,
    key: str,
    request_fingerprint: str,
    now: datetime,
    lock_for: timedelta = LOCK_FOR,
) -> ClaimResult:
    """Claim ``key`` for this request, in transactions of its own that are committed on return
    (so a concurrent duplicate sees the claim while this request is still running)."""
    locked_until = now + lock_for
    # Twice at most: a claim can vanish between our insert and our read when its request fails
    # and releases it; then the key is free again and our second insert normally wins.
    for _ in range(2):
        try:
            with lazy_transaction(sessions) as s:
                key_id = s.execute(
                    insert(IdempotencyKey.__table__)  # type: ignore[arg-type]
                    .values(
                        principal=principal,
                        key=key,
                        fingerprint=request_fingerprint,
                        status_code=None,
                        response=None,
                        created_at=now,
                        locked_until=locked_until,
                    )
                    .returning(IdempotencyKey.__table__.c.id)
                ).scalar_one()
                return Claimed(key_id, locked_until)
        except IntegrityError:
            pass  # the key exists: decide from the row below

        with sessions() as s, s.begin():
            row = s.scalars(
                select(IdempotencyKey).where(
                    IdempotencyKey.principal == principal, IdempotencyKey.key == key
                )
            ).one_or_none()
            if row is None:
                continue
            if row.fingerprint != request_fingerprint:
                return Mismatch()
            if row.status_code is not None:
                return Replay(row.status_code, row.response or b"")
            if row.locked_until is not None and row.locked_until > now:
                return InProgress()
            # The first request's process died holding the claim. Take it over only if nobody
            # else has since: the update matches the expired lock value we read, or nothing.
            taken = _affected(
                s,
                update(IdempotencyKey)
                .where(
                    IdempotencyKey.id == row.id,
                    IdempotencyKey.status_code.is_(None),
                    _same_lock(row.locked_until),
                )
                .values(locked_until=locked_until),
            )
            if taken == 1:
                return Claimed(row.id, locked_until)
            return InProgress()
    return InProgress()


def record(session: Session, claimed: Claimed, *, status_code: int, body: bytes) -> bool:
    """Store the response on the claimed key, in the caller's transaction (the one holding the
    request's effect). False when the claim is no longer ours (its lock ran out and another
    request took it over): the caller must then roll back, or the effect would happen twice."""
    stored = _affected(
        session,
        # the Core table, not the entity: no ORM bulk-update machinery on every request
        update(IdempotencyKey.__table__)
        .where(_still_ours(claimed))
        .values(status_code=status_code, response=body, locked_until=None),
    )
    return stored == 1


def release(session: Session, claimed: Claimed) -> bool:
    """Forget the claim (the request failed without a response worth replaying), so a retry
    runs afresh. False when it was no longer ours."""
    return _affected(session, delete(IdempotencyKey).where(_still_ours(claimed))) == 1


def purge_expired(session: Session, older_than: datetime) -> int:
    """Delete keys created before ``older_than`` (normally now - KEEP_FOR); returns how many.
    Runs in the caller's transaction."""
    return _affected(session, delete(IdempotencyKey).where(IdempotencyKey.created_at < older_than))


def _affected(session: Session, statement: Executable) -> int:
    """Rows an UPDATE or DELETE matched (Session.execute is typed as returning rows)."""
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def _same_lock(locked_until: datetime | None) -> ColumnElement[bool]:
    column = IdempotencyKey.locked_until
    return column.is_(None) if locked_until is None else column == locked_until


def _still_ours(claimed: Claimed) -> ColumnElement[bool]:
    return and_(
        IdempotencyKey.id == claimed.key_id,
        IdempotencyKey.status_code.is_(None),
        IdempotencyKey.locked_until == claimed.locked_until,
    )
