"""Who is calling: a bearer token (``Authorization: Bearer flt_...``) resolved to a Caller.
Routes take ``CallerDep`` and pass it to the services, which check the permission table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from central.domain.permissions import Caller, Role
from central.services.users import TokenRefused, caller_for_token

_bearer = HTTPBearer(auto_error=False, description="a token from POST /auth/token")


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"}
    )


def current_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None:
        raise _unauthorized("sign in: send Authorization: Bearer <token> (POST /auth/token)")
    with request.app.state.sessions() as session:
        try:
            return caller_for_token(session, credentials.credentials, datetime.now(UTC))
        except TokenRefused as exc:
            raise _unauthorized(str(exc)) from None


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
