"""The Idempotency-Key header for state-changing routes (Stripe's semantics).

A route (a plain ``def``: the work blocks on the database) takes the raw body from an async
dependency (``async def raw_body(request: Request) -> bytes: return await request.body()``;
Starlette keeps the body, so FastAPI parses the same bytes), then hands its work over::

    return run_idempotent(
        sessions, principal=user.username,
        key=idempotency_key,  # Annotated[str | None, Header(alias="Idempotency-Key")] = None
        request_fingerprint=fingerprint("POST", "/tickets", body),
        handler=lambda s: (201, create_ticket(s, payload)),
    )

Without a key the handler simply runs in a transaction. With one, a retry of a finished request
gets the first response back byte for byte (marked ``Idempotent-Replayed: true``) and the
handler does not run again; see central.services.idempotency for the rest of the rules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, assert_never

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException

from central.services import idempotency
from central.services.idempotency import Claimed, InProgress, Mismatch, Replay, fingerprint

# fingerprint is re-exported: a route needs it next to run_idempotent.
__all__ = ["HEADER", "REPLAYED_HEADER", "fingerprint", "key_problem", "run_idempotent"]

log = logging.getLogger("fieldloop.central.idempotency")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255  # the column's width

Handler = Callable[[Session], tuple[int, Any]]


class _ClaimLost(Exception):
    """Our claim ran out and another request took the key over: undo this run's effect."""


def run_idempotent(
    sessions: sessionmaker[Session],
    *,
    principal: str,
    key: str | None,
    request_fingerprint: str,
    handler: Handler,
) -> Response:
    """Run ``handler`` (inside an open transaction; it returns ``(status, jsonable body)``) at
    most once per ``(principal, key)``, and answer every retry as the first run was answered.

    Without a key an HTTPException from the handler propagates as usual; with one it becomes the
    stored answer (its body and status: the model keeps no headers, so a replay has none)."""
    if key is None:
        with sessions() as s, s.begin():
            # Rendered inside the transaction: a body that cannot be encoded undoes the effect.
            return _render(*handler(s))
    if (problem := key_problem(key)) is not None:
        return _error(400, problem)

    result = idempotency.claim(
        sessions,
        principal=principal,
        key=key,
        request_fingerprint=request_fingerprint,
        now=datetime.now(UTC),
    )
    match result:
        case Mismatch():
            return _error(
                422,
                f"{HEADER} {key!r} was already used for a different request; "
                "use a new key for a new request",
            )
        case InProgress():
            return _in_progress()
        case Replay(status_code=status, body=body):
            return Response(
                body,
                status_code=status,
                headers={REPLAYED_HEADER: "true"},
                media_type="application/json" if body else None,
            )
        case Claimed() as claimed:
            return _run_claimed(sessions, claimed, handler)
        case _:
            assert_never(result)


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a usable Idempotency-Key, or None when it is."""
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        return (
            f"the {HEADER} header must be 1 to {MAX_KEY_LENGTH} characters long, not {len(key)}; "
            "a random UUID is a good key"
        )
    if not all(" " <= c <= "~" for c in key):
        return f"the {HEADER} header must be printable ASCII only; a random UUID is a good key"
    return None


def _run_claimed(sessions: sessionmaker[Session], claimed: Claimed, handler: Handler) -> Response:
    try:
        # The effect and the stored response commit together, or neither does.
        with sessions() as s, s.begin():
            response = _render(*handler(s))
            stored = idempotency.record(
                s, claimed, status_code=response.status_code, body=bytes(response.body)
            )
            if not stored:
                raise _ClaimLost
        return response
    except _ClaimLost:
        log.warning("idempotency key #%d was taken over while its request ran", claimed.key_id)
        return _in_progress()
    except HTTPException as exc:
        # The handler refused; its transaction is rolled back. Keep the refusal, so a retry
        # hears the same answer rather than running the request again.
        response = _render(exc.status_code, {"detail": exc.detail}, exc.headers)
        with sessions() as s, s.begin():
            stored = idempotency.record(
                s, claimed, status_code=response.status_code, body=bytes(response.body)
            )
        return response if stored else _in_progress()
    except Exception:
        # A crash is not an answer: free the key so a retry runs the request afresh.
        try:
            with sessions() as s, s.begin():
                idempotency.release(s, claimed)
        except Exception:
            log.exception(
                "could not release idempotency key #%d; it frees itself when its lock runs out",
                claimed.key_id,
            )
        raise


def _render(status: int, content: Any, headers: dict[str, str] | None = None) -> Response:
    if status < 200 or status in (204, 304):  # these carry no body (as FastAPI's own handler)
        return Response(status_code=status, headers=headers)
    if isinstance(content, BaseModel):  # pydantic writes its own JSON, much faster
        return Response(
            content.model_dump_json().encode(),
            status_code=status,
            headers=headers,
            media_type="application/json",
        )
    return JSONResponse(jsonable_encoder(content), status_code=status, headers=headers)


def _error(status: int, detail: str) -> Response:
    return JSONResponse({"detail": detail}, status_code=status)


def _in_progress() -> Response:
    return JSONResponse(
        {"detail": "a request with this Idempotency-Key is still being processed; retry later"},
        status_code=409,
        headers={"Retry-After": "1"},
    )
