"""Photos, signatures and documents on a ticket: each file's bytes stored once by sha256 (a blob),
each use of it on a ticket an attachment, each new attachment a history entry.

The caller holds the ticket's row lock (``visible_ticket(..., lock=True)``) and the transaction,
as for every other ticket change; that lock is also what keeps two uploads of one file to one
ticket from both adding a row.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from central.domain.media import KINDS, MediaRejected, check_upload
from central.services import history
from central.services.tickets import BadInput
from central.storage.models import Attachment, Blob, Ticket

MAX_CAPTION = 500  # the column's length
_MAX_FILENAME = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class AttachmentNotFound(LookupError):
    def __init__(self, ticket_id: int, sha256: str) -> None:
        super().__init__(f"ticket {ticket_id} has no attachment {sha256[:12]}…")
        self.ticket_id = ticket_id
        self.sha256 = sha256


def clean_filename(name: str | None) -> str | None:
    """Only the name a person gave the file: no client path (C:\\fakepath\\…), no control
    characters, at most the column's length. It is shown, never used as a path."""
    if name is None:
        return None
    base = _CONTROL.sub("", re.split(r"[\\/]", name)[-1]).strip()
    return base[:_MAX_FILENAME] or None


def _store_blob(
    session: Session, sha256: str, content_type: str, data: bytes, now: datetime
) -> None:
    """Insert the blob unless it exists. Two requests storing the same file at once both succeed:
    the database's ON CONFLICT DO NOTHING settles the race instead of a unique violation."""
    values: dict[str, Any] = {
        "sha256": sha256,
        "content_type": content_type,
        "size": len(data),
        "data": data,
        "created_at": now,
    }
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(
            postgresql.insert(Blob)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Blob.sha256])
        )
    elif dialect == "sqlite":
        session.execute(
            sqlite.insert(Blob)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Blob.sha256])
        )
    elif session.get(Blob, sha256) is None:  # other databases: not race-safe, but correct alone
        session.add(Blob(**values))
        session.flush()


def attach(
    session: Session,
    ticket: Ticket,
    *,
    kind: str,
    data: bytes,
    filename: str | None,
    declared_type: str | None,
    caption: str | None,
    actor: str,
    now: datetime,
) -> Attachment:
    """Attach ``data`` to ``ticket`` as ``kind``, or raise BadInput naming the field at fault.
    The same file attached again as the same kind returns the existing attachment unchanged."""
    if kind not in KINDS:
        raise BadInput("kind", f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    if caption is not None and len(caption) > MAX_CAPTION:
        raise BadInput("caption", f"at most {MAX_CAPTION} characters")
    try:
        content_type = check_upload(kind, data, declared_type)
    except MediaRejected as exc:
        raise BadInput("file", str(exc)) from None
    sha256 = hashlib.sha256(data).hexdigest()

    existing = session.execute(
        select(Attachment).where(
            Attachment.ticket_id == ticket.id,
            Attachment.sha256 == sha256,
            Attachment.kind == kind,
        )
    ).scalar_one_or_none()
    if existing is not None:
        return existing  # a retry or a double tap: nothing new happened to the ticket

    _store_blob(session, sha256, content_type, data, now)
    name = clean_filename(filename)
    row = Attachment(
        ticket_id=ticket.id,
        sha256=sha256,
        kind=kind,
        filename=name,
        content_type=content_type,
        size=len(data),
        caption=caption,
        uploaded_by=actor,
        uploaded_at=now,
    )
    session.add(row)
    ticket.updated_at = now
    history.record(
        session,
        ticket,
        at=now,
        actor=actor,
        action="attached",
        note=caption,
        data={
            "sha256": sha256,
            "kind": kind,
            "size": len(data),
            "content_type": content_type,
            "filename": name,
        },
    )
    session.flush()  # the row's id, and any constraint failure, surface here
    return row


def list_attachments(session: Session, ticket_id: int) -> list[Attachment]:
    """The ticket's attachments, oldest first."""
    return list(
        session.scalars(
            select(Attachment)
            .where(Attachment.ticket_id == ticket_id)
            .order_by(Attachment.uploaded_at, Attachment.id)
        )
    )


def blob_for(session: Session, ticket_id: int, sha256: str) -> tuple[Blob, Attachment]:
    """The content of a file attached to this ticket, with (the first) attachment of it. Only a
    hash attached to *this* ticket is served: knowing a hash gives no access to other tickets."""
    row = session.execute(
        select(Blob, Attachment)
        .join(Attachment, Attachment.sha256 == Blob.sha256)
        .where(Attachment.ticket_id == ticket_id, Attachment.sha256 == sha256)
        .order_by(Attachment.id)
        .limit(1)
    ).first()
    if row is None:
        raise AttachmentNotFound(ticket_id, sha256)
    return row[0], row[1]
