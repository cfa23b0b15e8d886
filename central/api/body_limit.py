"""A request-body size limit enforced before the application reads anything.

A declared ``Content-Length`` over the limit is refused with 413 before the app is called, so
neither the handler nor the framework's body parsing runs and the body is never read (the server
sends no ``100 Continue`` either, so a careful client never uploads it). A body without a length
(chunked) is counted as the app reads it; the moment it passes the limit the client gets the 413
and the app sees a disconnect. Limits are per path, so uploads can be allowed more than JSON.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("fieldloop.central.body_limit")


class RequestBodyTooLarge(Exception):
    """The request body passed its limit after the response had started, so no 413 could be
    sent; raised from ``receive`` so the server drops the connection."""


class BodyLimitMiddleware:
    """Refuse request bodies over a size limit; ``limits`` are ``(path regex, bytes)`` pairs
    tried in order (the first whose regex matches the whole path wins), else ``default_limit``.

    Patterns must match the whole path (``re.fullmatch``): a bigger limit is a privilege, and an
    unanchored ``/attachments`` would otherwise grant it to any path that merely contains it.
    """

    def __init__(
        self, app: ASGIApp, *, default_limit: int, limits: Sequence[tuple[str, int]] = ()
    ) -> None:
        for pattern, limit in [("default_limit", default_limit), *limits]:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError(
                    f"body limit for {pattern!r} must be a whole number of bytes >= 0, "
                    f"not {limit!r}"
                )
        self.app = app
        self.default_limit = default_limit
        self.limits = [(re.compile(pattern), limit) for pattern, limit in limits]

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.limits:
            if pattern.fullmatch(path):
                return limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        where = f"{scope['method']} {scope['path']}"

        declared = [v for k, v in scope["headers"] if k.lower() == b"content-length"]
        if declared:
            length = _content_length(declared)
            if length is None:
                shown = b", ".join(declared).decode("latin-1")
                detail = f"Content-Length {shown!r} is not a single whole number of bytes"
                await _answer(send, 400, detail)
                return
            if length > limit:
                detail = f"request body is {length} bytes; the limit for {where} is {limit} bytes"
                await _answer(send, 413, detail)
                return

        # Counted even when the length was declared and within the limit: the server enforces
        # the framing today, but the count is cheap and does not depend on it.
        received = 0
        started = False  # the app has sent http.response.start
        answered = False  # we sent the 413 ourselves; whatever the app sends is dropped

        async def counting_receive() -> Message:
            nonlocal received, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] != "http.request":
                return message
            received += len(message.get("body", b""))
            if received <= limit:
                return message
            detail = (
                f"request body is at least {received} bytes; the limit for {where} is {limit} bytes"
            )
            if started:
                raise RequestBodyTooLarge(detail)
            # Answer now rather than raise: frameworks turn an error while reading the body
            # into their own 400, and the client should hear why before it sends any more.
            answered = True
            await _answer(send, 413, detail)
            return {"type": "http.disconnect"}

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if answered:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not answered:
                raise
            # The app was told the client left; what it raised about that is no one's concern.
            log.debug("app failed after a 413 for %s", where, exc_info=True)


def _content_length(values: list[bytes]) -> int | None:
    """The declared length, or None when a value is not plain digits or repeated values differ
    (RFC 9110 allows a repeated identical value; anything else is ambiguous framing)."""
    if len(set(values)) != 1 or not re.fullmatch(rb"[0-9]+", values[0].strip()):
        return None
    return int(values[0])


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The body is left unread: keeping the connection would mean reading (and
                # discarding) all of it before the next request could be parsed.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
