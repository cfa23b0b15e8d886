"""Evidence on a ticket: upload a photo, signature or document, list them, fetch one's bytes.

Who may: the ticket's viewers list and fetch; its assigned engineer and staff upload (the
permission table's ``attach``). A ticket the caller may not see is a 404, never a 403.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Header, HTTPException, Path, Response, UploadFile, status
from pydantic import BaseModel

from central.api.auth import CallerDep
from central.api.deps import SessionDep
from central.api.errors import domain_errors
from central.domain.media import MAX_BYTES, MIB, PDF
from central.domain.permissions import Operation
from central.services.attachments import (
    AttachmentNotFound,
    attach,
    blob_for,
    list_attachments,
)
from central.services.tickets import may, visible_ticket
from central.storage.models import Attachment

router = APIRouter(prefix="/tickets", tags=["evidence"])

Kind = Literal["photo", "signature", "document"]
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="the file's sha256, hex")]
_CHUNK = 64 * 1024


class AttachmentPublic(BaseModel):
    sha256: str
    kind: str
    filename: str | None
    content_type: str
    size: int
    caption: str | None
    uploaded_by: str
    uploaded_at: datetime
    url: str

    @classmethod
    def of(cls, a: Attachment) -> AttachmentPublic:
        return cls(
            sha256=a.sha256,
            kind=a.kind,
            filename=a.filename,
            content_type=a.content_type,
            size=a.size,
            caption=a.caption,
            uploaded_by=a.uploaded_by,
            uploaded_at=a.uploaded_at,
            url=f"/tickets/{a.ticket_id}/attachments/{a.sha256}",
        )


def _read_capped(upload: UploadFile, kind: str) -> bytes:
    """The upload's bytes, reading at most one byte past the kind's limit, so an oversize file is
    refused without ever being held in memory whole."""
    limit = MAX_BYTES[kind]
    chunks: list[bytes] = []
    left = limit + 1
    while left > 0:
        chunk = upload.file.read(min(_CHUNK, left))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    data = b"".join(chunks)
    if len(data) > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"file: a {kind} may be at most {limit // MIB} MiB ({limit} bytes)",
        )
    return data


@router.post(
    "/{ticket_id}/attachments",
    status_code=status.HTTP_201_CREATED,
    response_model=AttachmentPublic,
)
def upload_attachment(
    ticket_id: int,
    caller: CallerDep,
    session: SessionDep,
    file: Annotated[UploadFile, File(description="the photo, signature image or document")],
    kind: Annotated[Kind, Form()] = "photo",
    caption: Annotated[str | None, Form(max_length=500)] = None,
) -> AttachmentPublic:
    """Attach a file. Its type is read from its content; the same file sent again as the same
    kind returns the attachment already there."""
    data = _read_capped(file, kind)  # before the row lock: no lock held while reading
    with session.begin(), domain_errors():
        ticket = visible_ticket(session, caller, ticket_id, lock=True)
        may(caller, Operation.attach, ticket)
        row = attach(
            session,
            ticket,
            kind=kind,
            data=data,
            filename=file.filename,
            declared_type=file.content_type,
            caption=caption,
            actor=caller.user,
            now=datetime.now(UTC),
        )
    return AttachmentPublic.of(row)


@router.get("/{ticket_id}/attachments", response_model=list[AttachmentPublic])
def get_attachments(
    ticket_id: int, caller: CallerDep, session: SessionDep
) -> list[AttachmentPublic]:
    with domain_errors():
        visible_ticket(session, caller, ticket_id)
    return [AttachmentPublic.of(a) for a in list_attachments(session, ticket_id)]


@router.get(
    "/{ticket_id}/attachments/{sha256}",
    response_class=Response,
    responses={200: {"content": {"image/*": {}, PDF: {}}, "description": "the file's bytes"}},
)
def get_attachment_content(
    ticket_id: int,
    sha256: Sha256,
    caller: CallerDep,
    session: SessionDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    with domain_errors():
        visible_ticket(session, caller, ticket_id)
    try:
        blob, att = blob_for(session, ticket_id, sha256)
    except AttachmentNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    etag = f'"{blob.sha256}"'  # content-addressed: the hash is the strongest validator there is
    headers = {
        "ETag": etag,
        "Cache-Control": "private",  # evidence of one customer's job: no shared caches
        "X-Content-Type-Options": "nosniff",  # the sniffed type is the only type
        # served from our origin: never let a file run script there, even a PDF's
        "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
    }
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    disposition = "attachment" if blob.content_type == PDF else "inline"
    if att.filename:
        disposition += f"; filename*=UTF-8''{quote(att.filename, safe='')}"
    headers["Content-Disposition"] = disposition
    return Response(content=blob.data, media_type=blob.content_type, headers=headers)
