"""Signed webhooks from other systems (a CMMS, a BMS, a helpdesk): each delivery becomes one
ticket, and a delivery sent again (the sender retries when it missed our answer) becomes none."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, FastAPI, Header, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from central.api.deps import SessionDep, current_rules
from central.api.errors import field_errors, unprocessable
from central.api.schemas import StateLabel
from central.domain.intake import TicketRequest
from central.domain.lifecycle import State
from central.domain.signatures import DEFAULT_WINDOW_S, HEADER, SignatureRejected, verify
from central.services.intake import create_ticket
from central.services.live_rules import DecisionRules
from central.storage.models import Ticket, WebhookDelivery

log = logging.getLogger("fieldloop.central.webhooks")

router = APIRouter(tags=["intake"])

DELIVERY_HEADER = "FieldLoop-Delivery"
# A ticket's description may be 20,000 characters; as JSON \uXXXX escapes that is 120 kB.
MAX_BODY_BYTES = 256 * 1024
MIN_SECRET_CHARS = 16

_SOURCE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # fits WebhookDelivery.source (64)
_DELIVERY_ID = re.compile(r"[\x20-\x7e]{1,128}")  # printable ASCII, fits delivery_id (128)
# Unknown sources are verified against this, so they take as long as known ones.
_DECOY_SECRET = secrets.token_hex(32)


@dataclass(frozen=True)
class IntakeConfig:
    """What the webhook and web-form routes need from the settings."""

    webhook_secrets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    replay_window_s: int = DEFAULT_WINDOW_S
    public_reporting: bool = False  # an unauthenticated form on the internet is opt-in


def configure(
    app: FastAPI,
    *,
    webhook_secrets: dict[str, list[str]],
    replay_window_s: int,
    public_reporting: bool,
) -> IntakeConfig:
    """Store the intake settings on ``app.state``; a bad value fails at start-up, not per call."""
    for source, keys in webhook_secrets.items():
        if not _SOURCE.fullmatch(source):
            raise ValueError(
                f"webhook source {source!r}: use 1-64 of a-z 0-9 _ -, starting with a letter or "
                "digit"
            )
        if isinstance(keys, str) or not keys:
            raise ValueError(f"webhook source {source!r}: give a list of one or more secrets")
        if any(len(k) < MIN_SECRET_CHARS for k in keys):
            raise ValueError(
                f"webhook source {source!r}: every secret needs {MIN_SECRET_CHARS}+ characters"
            )
    if replay_window_s <= 0:
        raise ValueError("replay_window_s must be positive")
    config = IntakeConfig(
        webhook_secrets={s: tuple(k) for s, k in webhook_secrets.items()},
        replay_window_s=replay_window_s,
        public_reporting=public_reporting,
    )
    app.state.intake = config
    return config


def intake_config(request: Request) -> IntakeConfig:
    # Not configured yet: no webhook source exists and the public form is off.
    return getattr(request.app.state, "intake", None) or IntakeConfig()


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refused with 413 as soon as it passes ``limit`` (chunked bodies too)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _secrets_for(config: IntakeConfig, source: str) -> tuple[str, ...] | None:
    """Compare with every configured name, no early exit: the time taken does not tell a prober
    how much of a name they guessed."""
    wanted = source.encode()
    found: tuple[str, ...] | None = None
    for name, keys in config.webhook_secrets.items():
        if hmac.compare_digest(name.encode(), wanted):
            found = keys
    return found


class WebhookAccepted(BaseModel):
    ticket_id: int | None
    state: StateLabel | None
    follow_url: str | None  # only in the first answer: the token is not stored, only its hash
    duplicate: bool


def _find(session: Session, source: str, delivery_id: str) -> WebhookDelivery | None:
    return session.execute(
        select(WebhookDelivery).where(
            WebhookDelivery.source == source, WebhookDelivery.delivery_id == delivery_id
        )
    ).scalar_one_or_none()


def _duplicate(session: Session, delivery: WebhookDelivery) -> WebhookAccepted:
    ticket = session.get(Ticket, delivery.ticket_id) if delivery.ticket_id is not None else None
    return WebhookAccepted(
        ticket_id=delivery.ticket_id,
        state=StateLabel.of(State(ticket.state)) if ticket is not None else None,
        follow_url=None,
        duplicate=True,
    )


class DeliveryReused(ValueError):
    """The delivery id was already used for a different body."""


def _check_same(seen: WebhookDelivery, body_sha256: str) -> None:
    if seen.body_sha256 != body_sha256:
        raise DeliveryReused(
            f"{DELIVERY_HEADER} {seen.delivery_id!r} was already used for a different body "
            f"(ticket {seen.ticket_id}); each delivery needs its own id"
        )


def _store(
    session: Session,
    source: str,
    delivery_id: str,
    req: TicketRequest,
    now: datetime,
    body_sha256: str,
    rules: DecisionRules | None = None,
) -> WebhookAccepted:
    """The delivery row and its ticket in one transaction. Checking first answers a plain retry
    cheaply; the unique (source, delivery_id) constraint settles two copies arriving together:
    the loser's insert fails, its transaction (ticket included) rolls back, and it answers with
    the winner's ticket."""
    try:
        with session.begin():
            seen = _find(session, source, delivery_id)
            if seen is not None:
                _check_same(seen, body_sha256)
                return _duplicate(session, seen)
            delivery = WebhookDelivery(
                source=source, delivery_id=delivery_id, body_sha256=body_sha256, received_at=now
            )
            session.add(delivery)
            session.flush()  # claim the delivery id before doing the work
            opened = create_ticket(
                session,
                req,
                source="webhook",
                actor=f"webhook:{source}",
                now=now,
                data={"delivery_id": delivery_id},
                rules=rules,
            )
            delivery.ticket_id = opened.ticket.id
            accepted = WebhookAccepted(
                ticket_id=opened.ticket.id,
                state=StateLabel.of(State(opened.ticket.state)),
                follow_url=f"/t/{opened.customer_token}",
                duplicate=False,
            )
    except IntegrityError:
        with session.begin():
            seen = _find(session, source, delivery_id)
            if seen is None:
                raise  # some other constraint: not a replay
            _check_same(seen, body_sha256)
            return _duplicate(session, seen)
    log.info("webhook %s delivery %r opened ticket %s", source, delivery_id, accepted.ticket_id)
    return accepted


@router.post(
    "/intake/webhooks/{source}",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookAccepted,
    responses={
        200: {"model": WebhookAccepted, "description": "a replayed delivery: its first ticket"},
        400: {"description": f"no valid {DELIVERY_HEADER} header"},
        401: {"description": "signature missing, wrong or outside the replay window"},
        404: {"description": "no such webhook source"},
        413: {"description": "body too large"},
        422: {"description": "the body is not a valid ticket request; every field is named"},
    },
)
async def receive(
    source: str,
    request: Request,
    session: SessionDep,
    signature: Annotated[str | None, Header(alias=HEADER, include_in_schema=False)] = None,
    delivery: Annotated[str | None, Header(alias=DELIVERY_HEADER, include_in_schema=False)] = None,
) -> JSONResponse:
    """A problem report from another system, in the body a TicketRequest as JSON, signed with
    ``FieldLoop-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<delivery id>." + body>``
    and ``FieldLoop-Delivery: <delivery id>``."""
    config = intake_config(request)
    body = await read_body(request)  # the exact bytes that were signed, before any parsing
    now = datetime.now(UTC)
    delivery_id = (delivery or "").strip()
    if not _DELIVERY_ID.fullmatch(delivery_id):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"{DELIVERY_HEADER} header required: the sender's id of this delivery, 1-128 "
            "printable ASCII characters, the same on every retry",
        )
    keys = _secrets_for(config, source)
    try:
        verify(
            signature,
            # the delivery id is signed too: a captured delivery resent under a new id would
            # otherwise make a second ticket within the replay window
            delivery_id.encode() + b"." + body,
            keys or (_DECOY_SECRET,),
            now=now.timestamp(),
            window_s=config.replay_window_s,
        )
    except SignatureRejected as exc:
        if keys is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such webhook source") from None
        log.warning("webhook %s rejected: %s", source, exc)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"signature rejected: {exc}",
            headers={"WWW-Authenticate": HEADER},
        ) from None
    if keys is None:  # unreachable unless someone signs with the decoy; answer as for any other
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such webhook source")

    try:
        req = TicketRequest.model_validate_json(body)
    except ValidationError as exc:
        # "body." as in the rest of the API's 422s; invalid JSON is reported on "body" itself
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise unprocessable(field_errors(errors)) from None

    try:
        accepted = await run_in_threadpool(
            _store,
            session,
            source,
            delivery_id,
            req,
            now,
            hashlib.sha256(body).hexdigest(),
            current_rules(request),
        )
    except DeliveryReused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return JSONResponse(
        accepted.model_dump(mode="json"),
        status_code=status.HTTP_200_OK if accepted.duplicate else status.HTTP_201_CREATED,
        headers={"Cache-Control": "no-store"},  # the follow link is a secret
    )
