"""Who is calling: a bearer token (``Authorization: Bearer flt_...``) resolved to a Caller.
Routes take ``CallerDep`` and pass it to the services, which check the permission table."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from central.domain.permissions import Caller, Role
from central.services.users import TokenRefused, caller_for_token, resolve_token

_bearer = HTTPBearer(auto_error=False, description="a token from POST /auth/token")


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"}
    )


class TokenCache:
    """Tokens seen in the last few seconds, so a burst of calls from one app does not look the
    same token up for every request. A revoked token or a deactivated user stops working within
    ``ttl`` seconds; an expired token stops at once (its expiry is kept with it)."""

    def __init__(self, ttl: float = 10.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[str, tuple[Caller, datetime, float]] = {}

    def get(self, token: str, now: datetime) -> Caller | None:
        hit = self._entries.get(token)
        if hit is None:
            return None
        caller, expires_at, cached_at = hit
        if expires_at <= now or time.monotonic() - cached_at > self.ttl:
            self._entries.pop(token, None)
            return None
        return caller

    def put(self, token: str, caller: Caller, expires_at: datetime) -> None:
        if len(self._entries) >= self.size:
            self._entries.clear()  # crude but bounded; a miss only costs one lookup
        self._entries[token] = (caller, expires_at, time.monotonic())


def _lookup(request: Request, token: str, now: datetime) -> Caller:
    with request.app.state.sessions() as session:
        try:
            caller, expires_at = resolve_token(session, token, now)
        except TokenRefused as exc:
            raise _unauthorized(str(exc)) from None
    request.app.state.token_cache.put(token, caller, expires_at)
    return caller


async def current_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None:
        raise _unauthorized("sign in: send Authorization: Bearer <token> (POST /auth/token)")
    now = datetime.now(UTC)
    cached = request.app.state.token_cache.get(credentials.credentials, now)
    if cached is not None:
        return cached
    return await run_in_threadpool(_lookup, request, credentials.credentials, now)


CallerDep = Annotated[Caller, Depends(current_caller)]


def require_role(caller: Caller, *roles: Role) -> None:
    if caller.role not in roles:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"a {caller.role.value} may not do this (who may: "
            + ", ".join(r.value for r in roles)
            + ")",
        )


#: The board's sign-in cookie. Only read by GET pages (the board), never by an API call that
#: changes anything, so a forged cross-site request has nothing to ride on.
BOARD_COOKIE = "fieldloop_board"


def caller_from_cookie(request: Request) -> Caller | None:
    token = request.cookies.get(BOARD_COOKIE)
    if not token:
        return None
    with request.app.state.sessions() as session:
        try:
            return caller_for_token(session, token, datetime.now(UTC))
        except TokenRefused:
            return None
