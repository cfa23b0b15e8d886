"""Random tokens and their stored digests: a token is shown once and only its sha256 is kept, so
a copy of the database lets nobody in. Pure apart from the OS's randomness."""

from __future__ import annotations

import hashlib
import secrets


def new_token(prefix: str) -> str:
    """A bearer token that says what it is (``flt_`` API, ``flc_`` customer link) for secret
    scanners and for the person pasting it, with 192 random bits."""
    return f"{prefix}_{secrets.token_urlsafe(24)}"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
