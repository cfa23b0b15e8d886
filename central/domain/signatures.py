"""Signed webhooks, Stripe style: ``FieldLoop-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]``,
each v1 the HMAC-SHA256 of ``f"{t}.".encode() + signed`` under one of the source's secrets, where
the webhook route signs ``f"{delivery_id}.".encode() + raw_body``.
Signing the timestamp with the body lets a captured delivery be refused once the replay window
has passed; several v1 values and several secrets let a secret be rotated without downtime.
Pure: the caller passes ``now``."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Sequence

HEADER = "FieldLoop-Signature"
SCHEME = "v1"
DEFAULT_WINDOW_S = 300

# Bounds on what an unauthenticated caller can make us parse and hash.
MAX_HEADER_CHARS = 4096
MAX_SIGNATURES = 8

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_DIGITS = re.compile(r"[0-9]{1,12}")  # ASCII only: str.isdigit() would accept "١٢٣"


class SignatureRejected(ValueError):
    """The delivery is not authentic or not fresh; the message says exactly why."""


def _mac(secret: str, body: bytes, t: int) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, t: int) -> str:
    """The header value a sender puts on ``body`` sent at unix time ``t``."""
    if not secret:
        raise ValueError("an empty secret signs nothing")
    if t < 0:
        raise ValueError("t is unix seconds and cannot be negative")
    return f"t={t},{SCHEME}={_mac(secret, body, t)}"


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _parse(header: str) -> tuple[int, list[str]]:
    bad = f"malformed {HEADER} header"
    if len(header) > MAX_HEADER_CHARS:
        raise SignatureRejected(f"{bad}: longer than {MAX_HEADER_CHARS} characters")
    t: int | None = None
    v1: list[str] = []
    for item in header.split(","):
        item = item.strip()
        if not item:
            continue  # a trailing comma is harmless
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise SignatureRejected(f"{bad}: {_short(item)} is not key=value")
        if key == "t":
            if t is not None:
                raise SignatureRejected(f"{bad}: t is given more than once")
            if not _DIGITS.fullmatch(value):
                raise SignatureRejected(f"{bad}: t must be unix seconds, got {_short(value)}")
            t = int(value)
        elif key == SCHEME:
            if not _HEX64.fullmatch(value):
                raise SignatureRejected(
                    f"{bad}: {SCHEME} must be 64 hex digits (HMAC-SHA256), got {_short(value)}"
                )
            v1.append(value.lower())
        # other schemes (v0, a future v2) are ignored, so senders can add one before we accept it
    if t is None:
        raise SignatureRejected(f"{bad}: no t=<unix seconds>")
    if not v1:
        raise SignatureRejected(f"no {SCHEME} signature in the {HEADER} header")
    if len(v1) > MAX_SIGNATURES:
        raise SignatureRejected(f"{bad}: more than {MAX_SIGNATURES} {SCHEME} signatures")
    return t, v1


def verify(
    header: str | None,
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    window_s: int = DEFAULT_WINDOW_S,
) -> int:
    """Return the signed timestamp, or raise SignatureRejected saying why.

    The signature is checked before the timestamp: a forged delivery is told "mismatch" whatever
    its age, and "outside the replay window" means the delivery was authentic, so the sender
    knows to fix their clock or stop replaying."""
    if isinstance(secrets, str):  # a bare str is a Sequence[str] of one-letter secrets
        raise TypeError("secrets must be a sequence of secrets, not one string")
    if header is None or not header.strip():
        raise SignatureRejected(f"missing {HEADER} header")
    t, candidates = _parse(header)
    keys = [s for s in secrets if s]  # an empty key would be a secret everyone knows
    if not keys:
        raise SignatureRejected("no signing secret is configured for this source")
    matched = False
    for secret in keys:
        expected = _mac(secret, body, t)
        for candidate in candidates:
            # no early exit: the time taken says nothing about which secret or value matched
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureRejected(
            f"signature mismatch: no {SCHEME} value is the HMAC-SHA256 of "
            f"'<t>.' + the raw body under a current secret of this source"
        )
    age = now - t
    if abs(age) > window_s:
        # whole seconds rounded up, so "outside by" is never reported as 0
        by, off = math.ceil(abs(age) - window_s), math.ceil(abs(age))
        where = f"{off} s old" if age > 0 else f"{off} s in the future"
        raise SignatureRejected(
            f"timestamp {t} is {where}: {by} s outside the replay window of ±{window_s} s"
        )
    return t
