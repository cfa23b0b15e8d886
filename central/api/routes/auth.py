"""Signing in and managing users: tokens for people and for edge sites."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from central.api.auth import CallerDep, require_role
from central.api.deps import SessionDep
from central.domain.permissions import Role
from central.services.users import (
    DEFAULT_TOKEN_TTL,
    UserError,
    authenticate,
    create_user,
    find_user,
    issue_token,
)
from central.storage.models import User

router = APIRouter(tags=["auth"])


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SignIn(_In):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)
    ttl_hours: float = Field(DEFAULT_TOKEN_TTL.total_seconds() / 3600, gt=0, le=24 * 30)


class TokenPublic(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime
    username: str
    role: Role


class UserCreate(_In):
    username: str = Field(min_length=1, max_length=128)
    role: Role
    password: str | None = Field(None, min_length=10, max_length=1024)
    display_name: str | None = Field(None, max_length=200)
    department: str | None = Field(None, max_length=64)
    site: str | None = Field(None, max_length=128)
    contact: str | None = Field(None, max_length=255)


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    username: str
    display_name: str
    role: Role
    department: str | None
    site: str | None
    contact: str | None
    active: bool
    created_at: datetime


class UserPage(BaseModel):
    items: list[UserPublic]
    total: int
    limit: int
    offset: int


class TokenRequest(_In):
    ttl_hours: float = Field(24 * 90, gt=0, le=24 * 366)
    label: str | None = Field(None, max_length=128)


@router.post("/auth/token", response_model=TokenPublic)
def sign_in(body: SignIn, session: SessionDep) -> TokenPublic:
    """Exchange a user name and password for a bearer token that expires."""
    now = datetime.now(UTC)
    with session.begin():
        try:
            user = authenticate(session, body.username, body.password)
        except UserError as exc:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from None
        issued = issue_token(session, user, now=now, ttl=timedelta(hours=body.ttl_hours))
        return TokenPublic(
            access_token=issued.token,
            expires_at=issued.expires_at,
            username=user.username,
            role=Role(user.role),
        )


@router.get("/me", response_model=UserPublic)
def me(caller: CallerDep, session: SessionDep) -> UserPublic:
    user = find_user(session, caller.user)
    assert user is not None  # the token resolved to this user a moment ago
    return UserPublic.model_validate(user)


@router.post("/users", response_model=UserPublic, status_code=201)
def add_user(body: UserCreate, caller: CallerDep, session: SessionDep) -> UserPublic:
    """Create a user (admins only). Devices need a site; their tokens are confined to it."""
    require_role(caller, Role.admin)
    with session.begin():
        try:
            user = create_user(
                session,
                body.username,
                body.role,
                now=datetime.now(UTC),
                password=body.password,
                display_name=body.display_name,
                department=body.department,
                site=body.site,
                contact=body.contact,
            )
        except UserError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        return UserPublic.model_validate(user)


@router.get("/users", response_model=UserPage)
def list_users(
    caller: CallerDep,
    session: SessionDep,
    role: Role | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> UserPage:
    require_role(caller, Role.admin, Role.dispatcher, Role.supervisor)
    query = select(User)
    if role is not None:
        query = query.where(User.role == role.value)
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.execute(query.order_by(User.username).limit(limit).offset(offset)).scalars()
    return UserPage(
        items=[UserPublic.model_validate(u) for u in rows], total=total, limit=limit, offset=offset
    )


@router.post("/users/{username}/tokens", response_model=TokenPublic, status_code=201)
def add_token(
    username: str, body: TokenRequest, caller: CallerDep, session: SessionDep
) -> TokenPublic:
    """A long-lived token for a device (an edge site) or an integration (admins only)."""
    require_role(caller, Role.admin)
    with session.begin():
        user = find_user(session, username)
        if user is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"user {username} does not exist")
        issued = issue_token(
            session,
            user,
            now=datetime.now(UTC),
            ttl=timedelta(hours=body.ttl_hours),
            label=body.label,
        )
        return TokenPublic(
            access_token=issued.token,
            expires_at=issued.expires_at,
            username=user.username,
            role=Role(user.role),
        )
