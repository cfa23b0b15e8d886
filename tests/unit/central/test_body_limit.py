"""BodyLimitMiddleware: oversized bodies are refused before the handler runs, declared ones before
a byte of the body is read, chunked ones as soon as they pass the limit. Checked in-process with
TestClient and plain ASGI calls, and against a real uvicorn with raw sockets, where "not read"
can be seen on the wire: the 413 arrives and the connection closes while the client still owes
almost all of the body."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central.api.body_limit import BodyLimitMiddleware, RequestBodyTooLarge

JSON_LIMIT = 1_000
UPLOAD_LIMIT = 20_000
LIMITS = [(r"/tickets/[0-9]+/attachments", UPLOAD_LIMIT), (r"/tickets/.*", 10)]


@dataclass
class Seen:
    """What reached the application behind the middleware."""

    handled: list[str] = field(default_factory=list)  # routes whose handler ran
    reads: int = 0  # receive() calls the app made for an HTTP request


def make_app(seen: Seen) -> ASGIApp:
    app = FastAPI()

    @app.post("/tickets")
    def create_ticket(payload: dict[str, Any]) -> dict[str, int]:
        seen.handled.append("create_ticket")
        return {"fields": len(payload)}

    @app.post("/tickets/{ticket_id}/attachments")
    async def attach(ticket_id: int, request: Request) -> dict[str, int]:
        seen.handled.append("attach")
        return {"bytes": len(await request.body())}

    async def spy(scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            seen.reads += 1
            return await receive()

        await app(scope, counted if scope["type"] == "http" else receive, send)

    return BodyLimitMiddleware(spy, default_limit=JSON_LIMIT, limits=LIMITS)


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def client(seen: Seen) -> Iterator[TestClient]:
    with TestClient(make_app(seen)) as c:
        yield c


# --- choosing the limit ------------------------------------------------------------------------


def test_first_matching_pattern_wins_and_must_match_the_whole_path() -> None:
    mw = BodyLimitMiddleware(lambda *_: None, default_limit=5, limits=LIMITS)  # type: ignore[arg-type,return-value]
    assert mw.limit_for("/tickets/7/attachments") == UPLOAD_LIMIT  # before the broader /tickets/.*
    assert mw.limit_for("/tickets/7") == 10
    assert mw.limit_for("/tickets") == 5
    assert mw.limit_for("/api/tickets/7/attachments/x") == 5  # contains a pattern, matches none


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_a_limit_that_is_not_a_byte_count_is_refused_at_start(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"'/x' must be a whole number of bytes"):
        BodyLimitMiddleware(lambda *_: None, default_limit=5, limits=[("/x", bad)])  # type: ignore[arg-type,return-value]


# --- through TestClient --------------------------------------------------------------------------


def test_a_body_within_the_limit_reaches_the_handler(client: TestClient, seen: Seen) -> None:
    r = client.post("/tickets", json={"title": "pump 3 leaking"})
    assert (r.status_code, r.json()) == (200, {"fields": 1})
    assert seen.handled == ["create_ticket"]


def test_a_declared_length_over_the_limit_is_refused_unread(client: TestClient, seen: Seen) -> None:
    r = client.post("/tickets", content=b"x" * (JSON_LIMIT + 1))
    assert r.status_code == 413
    assert r.json() == {
        "detail": f"request body is {JSON_LIMIT + 1} bytes; the limit for POST /tickets is "
        f"{JSON_LIMIT} bytes"
    }
    assert r.headers["connection"] == "close"
    assert seen == Seen(handled=[], reads=0)


def test_uploads_get_their_own_bigger_limit(client: TestClient, seen: Seen) -> None:
    body = b"\x89PNG" * 2_000  # 8 kB: too big for JSON, fine as an attachment
    assert client.post("/tickets", content=body).status_code == 413
    r = client.post("/tickets/7/attachments", content=body)
    assert (r.status_code, r.json()) == (200, {"bytes": len(body)})
    assert client.post("/tickets/7/attachments", content=body * 3).status_code == 413
    assert seen.handled == ["attach"]


def test_a_body_without_a_length_is_counted(client: TestClient, seen: Seen) -> None:
    # TestClient hands a generator body over in one message, but without a Content-Length.
    r = client.post("/tickets", content=iter([b'{"a": "', b"x" * JSON_LIMIT, b'"}']))
    assert r.status_code == 413
    assert "the limit for POST /tickets is 1000 bytes" in r.json()["detail"]
    assert seen.handled == []


# --- plain ASGI: the cases a real client library will not produce --------------------------------


async def call(
    app: ASGIApp, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> tuple[list[Message], int]:
    """Run one request through ``app``; return what it sent and how many chunks it pulled."""
    pulled = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal pulled
        if pulled == len(chunks):
            return {"type": "http.disconnect"}
        pulled += 1
        return {
            "type": "http.request",
            "body": chunks[pulled - 1],
            "more_body": pulled < len(chunks),
        }

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/tickets",
        "raw_path": b"/tickets",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return sent, pulled


def detail(sent: list[Message]) -> tuple[int, str]:
    return sent[0]["status"], json.loads(sent[1]["body"])["detail"]


@pytest.mark.parametrize(
    "values",
    [[b"abc"], [b"-1"], [b"1e3"], [b""], [b"12", b"13"]],
    ids=["letters", "negative", "exponent", "empty", "two-different-values"],
)
async def test_an_invalid_content_length_is_a_400(seen: Seen, values: list[bytes]) -> None:
    headers = [(b"content-length", v) for v in values]
    sent, pulled = await call(make_app(seen), headers, [b"{}"])
    status, text = detail(sent)
    assert status == 400
    assert text.startswith("Content-Length ") and "is not a single whole number of bytes" in text
    assert (pulled, seen) == (0, Seen())


async def test_a_repeated_identical_content_length_is_accepted(seen: Seen) -> None:
    headers = [(b"content-length", b"2"), (b"content-length", b"2")]
    sent, _ = await call(make_app(seen), headers, [b"{}"])
    assert sent[0]["status"] == 200


async def test_a_chunked_body_stops_being_read_once_over_the_limit(seen: Seen) -> None:
    chunks = [b"x" * 400] * 100  # 40 kB offered, 1 kB allowed
    sent, pulled = await call(make_app(seen), [], chunks)
    assert detail(sent) == (
        413,
        "request body is at least 1200 bytes; the limit for POST /tickets is 1000 bytes",
    )
    assert pulled == 3  # the third chunk crossed the limit; the other 97 were never asked for
    assert seen.handled == []
    assert len(sent) == 2  # the app's own reaction to the "disconnect" was not sent on


async def test_over_the_limit_after_the_response_started_raises() -> None:
    async def echo_while_reading(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive()).get("more_body"):
            pass

    app = BodyLimitMiddleware(echo_while_reading, default_limit=JSON_LIMIT)
    with pytest.raises(RequestBodyTooLarge, match="the limit for POST /tickets is 1000 bytes"):
        await call(app, [], [b"x" * 600] * 3)


# --- a real uvicorn, driven with raw sockets -----------------------------------------------------


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the test stops it; leave pytest's signal handlers alone


@pytest.fixture
async def server(seen: Seen) -> AsyncIterator[int]:
    """uvicorn serving the app on a socket bound to a free port; yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: keep the process's logging as it is, so caplog sees uvicorn.error
    config = uvicorn.Config(make_app(seen), log_config=None, lifespan="off")
    srv = _Server(config)
    task = asyncio.create_task(srv.serve(sockets=[sock]), name="body-limit-uvicorn")
    while not srv.started:
        assert not task.done(), task.result()
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        srv.should_exit = True
        await task
        sock.close()


async def exchange(port: int, head: str, *body: bytes) -> bytes:
    """Send the request head and ``body`` (and nothing more), then read until the server closes
    the connection: a reply that arrives proves the server did not wait for the rest."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + b"".join(body))
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
        await writer.wait_closed()


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@pytest.fixture
def server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        yield caplog.records


async def test_uvicorn_answers_413_without_waiting_for_a_10_mb_body(
    server: int, seen: Seen, server_errors: list[logging.LogRecord]
) -> None:
    head = "POST /tickets HTTP/1.1\nHost: t\nContent-Type: application/json\n"
    raw = await exchange(server, head + "Content-Length: 10000000\n", b'{"a":')
    status, headers, body = parse(raw)
    assert status == 413
    assert headers["connection"] == "close"
    assert json.loads(body) == {
        "detail": "request body is 10000000 bytes; the limit for POST /tickets is 1000 bytes"
    }
    assert seen == Seen(handled=[], reads=0)
    assert server_errors == []


async def test_uvicorn_never_invites_an_oversized_body_with_100_continue(
    server: int, seen: Seen
) -> None:
    head = "POST /tickets/7/attachments HTTP/1.1\nHost: t\nExpect: 100-continue\n"
    raw = await exchange(server, head + "Content-Length: 10000000\n")
    assert raw.startswith(b"HTTP/1.1 413 ")  # no "100 Continue" first: the client sent nothing
    assert seen == Seen(handled=[], reads=0)


async def test_uvicorn_cuts_off_a_chunked_body_at_the_limit(
    server: int, seen: Seen, server_errors: list[logging.LogRecord]
) -> None:
    head = "POST /tickets HTTP/1.1\nHost: t\nContent-Type: application/json\n"
    head += "Transfer-Encoding: chunked\n"
    # 1.2 kB sent, and the body never ends (no last chunk): only the limit can end this request.
    raw = await exchange(server, head, chunk(b'{"a": "' + b"x" * 600), chunk(b"x" * 600))
    status, headers, body = parse(raw)
    assert status == 413
    assert headers["connection"] == "close"
    assert "the limit for POST /tickets is 1000 bytes" in json.loads(body)["detail"]
    assert seen.handled == []
    assert server_errors == []  # FastAPI's reaction to the cut-off body stayed quiet


async def test_uvicorn_passes_a_chunked_body_within_the_limit(server: int, seen: Seen) -> None:
    head = "POST /tickets/7/attachments HTTP/1.1\nHost: t\nConnection: close\n"
    head += "Transfer-Encoding: chunked\n"
    raw = await exchange(server, head, chunk(b"x" * 5_000), chunk(b"y" * 5_000), chunk(b""))
    status, _, body = parse(raw)
    assert (status, json.loads(body)) == (200, {"bytes": 10_000})
    assert seen.handled == ["attach"]
