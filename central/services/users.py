"""Users, passwords (argon2id) and bearer tokens with expiry."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from central.domain.permissions import Caller, Role
from central.domain.secrets import digest, new_token
from central.storage.models import ApiToken, User

_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
MIN_PASSWORD = 10
DEFAULT_TOKEN_TTL = timedelta(hours=12)
MAX_TOKEN_TTL = timedelta(days=366)


class UserError(ValueError):
    """A user cannot be created or signed in; the message says why."""


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once
    expires_at: datetime


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters")
    return _HASHER.hash(password)


def create_user(
    session: Session,
    username: str,
    role: Role,
    *,
    now: datetime,
    password: str | None = None,
    display_name: str | None = None,
    department: str | None = None,
    site: str | None = None,
    contact: str | None = None,
) -> User:
    if not _USERNAME.match(username):
        raise UserError(
            f"username {username!r}: letters, digits and . _ @ - only, starting with a letter "
            "or digit, at most 128"
        )
    if role is Role.device and not site:
        raise UserError("a device user needs --site: its credentials are confined to one site")
    if session.execute(select(User.id).where(User.username == username)).first():
        raise UserError(f"user {username!r} already exists")
    user = User(
        username=username,
        display_name=display_name or username,
        role=role.value,
        password_hash=hash_password(password) if password is not None else None,
        department=department,
        site=site,
        contact=contact,
        active=True,
        created_at=now,
    )
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, username: str) -> User | None:
    return session.execute(select(User).where(User.username == username)).scalar_one_or_none()


def authenticate(session: Session, username: str, password: str) -> User:
    """The active user with this password, or UserError with one message for every failure
    (no hint whether the name exists)."""
    user = find_user(session, username)
    refused = UserError("unknown user or wrong password")
    if user is None or not user.active or user.password_hash is None:
        _HASHER.hash(password)  # same cost either way, so timing does not reveal the name
        raise refused
    try:
        _HASHER.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise refused from None
    if _HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = _HASHER.hash(password)
    return user


def issue_token(
    session: Session,
    user: User,
    *,
    now: datetime,
    ttl: timedelta = DEFAULT_TOKEN_TTL,
    label: str | None = None,
) -> IssuedToken:
    if ttl <= timedelta(0) or ttl > MAX_TOKEN_TTL:
        raise UserError(f"token lifetime must be between 1 s and {MAX_TOKEN_TTL.days} days")
    token = new_token("flt")
    expires = now + ttl
    session.add(
        ApiToken(
            token_hash=digest(token),
            user_id=user.id,
            label=label,
            issued_at=now,
            expires_at=expires,
        )
    )
    session.flush()
    return IssuedToken(token, expires)


class TokenRefused(PermissionError):
    pass


def caller_for_token(session: Session, token: str, now: datetime) -> Caller:
    return resolve_token(session, token, now)[0]


def resolve_token(session: Session, token: str, now: datetime) -> tuple[Caller, datetime]:
    """The caller a token signs in, and when the token expires; TokenRefused says why not."""
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == digest(token))
    ).first()
    if row is None:
        raise TokenRefused("the bearer token is not known")
    tok, user = row
    if tok.revoked_at is not None:
        raise TokenRefused("the bearer token was revoked")
    if tok.expires_at <= now:
        raise TokenRefused("the bearer token expired; sign in again (POST /auth/token)")
    if not user.active:
        raise TokenRefused(f"user {user.username} is deactivated")
    caller = Caller(user.username, Role(user.role), site=user.site, department=user.department)
    return caller, tok.expires_at


def revoke_tokens(session: Session, user: User, now: datetime) -> int:
    tokens = session.execute(
        select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    ).scalars()
    n = 0
    for tok in tokens:
        tok.revoked_at = now
        n += 1
    return n
