"""Evidence uploads through the real app on SQLite and PostgreSQL: the type comes from the bytes,
a file is stored once, only the ticket's own people upload or see it, and every new attachment
is an entry in the ticket's verified history."""

from __future__ import annotations

import hashlib
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from central.api.app import create_app
from central.api.routes.attachments import router
from central.domain.intake import TicketRequest
from central.domain.media import MAX_BYTES
from central.domain.permissions import Role
from central.services import audit
from central.services.attachments import attach
from central.services.intake import create_ticket
from central.services.users import create_user, issue_token
from central.settings import Settings
from central.storage.db import make_engine, migrate, session_factory
from central.storage.models import Attachment, Blob, Ticket, TicketEvent

pytestmark = pytest.mark.integration

ENGINEER, OTHER_ENGINEER = "eng.li", "eng.zhao"
CUSTOMER, OTHER_CUSTOMER = "cust.wu", "cust.chen"


def tiny_png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


def tiny_jpeg(tag: bytes = b"") -> bytes:
    """SOI + JFIF APP0 (+ a COM segment so two photos can differ) + EOI."""
    app0 = b"JFIF\x00" + struct.pack(">BBBHHBB", 1, 1, 0, 1, 1, 0, 0)
    com = b"\xff\xfe" + struct.pack(">H", len(tag) + 2) + tag if tag else b""
    return b"\xff\xd8\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0 + com + b"\xff\xd9"


PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n"


@dataclass
class World:
    client: TestClient
    ticket_id: int
    other_ticket_id: int
    tokens: dict[str, str]

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def upload(
        self,
        user: str,
        data: bytes,
        *,
        kind: str = "photo",
        filename: str = "photo.jpg",
        content_type: str = "image/jpeg",
        caption: str | None = None,
        ticket_id: int | None = None,
    ) -> Any:
        form = {"kind": kind} | ({"caption": caption} if caption is not None else {})
        return self.client.post(
            f"/tickets/{ticket_id or self.ticket_id}/attachments",
            files={"file": (filename, data, content_type)},
            data=form,
            headers=self.auth(user),
        )

    def count(self, model: type[Blob] | type[Attachment]) -> int:
        with self.client.app.state.sessions() as s:  # type: ignore[attr-defined]
            return s.scalar(select(func.count()).select_from(model)) or 0

    def events(self, ticket_id: int | None = None) -> list[TicketEvent]:
        with self.client.app.state.sessions() as s:  # type: ignore[attr-defined]
            return list(
                s.scalars(
                    select(TicketEvent)
                    .where(TicketEvent.ticket_id == (ticket_id or self.ticket_id))
                    .order_by(TicketEvent.seq)
                )
            )


def _route_paths(routes: Iterable[Any]) -> Iterator[str]:
    """Every route path, also inside included routers: FastAPI 0.165 keeps an included router as
    one ``_IncludedRouter`` entry (no ``.path``) instead of copying its routes into the app."""
    for r in routes:
        if (path := getattr(r, "path", None)) is not None:
            yield path
        if (inner := getattr(r, "original_router", None)) is not None:
            yield from _route_paths(inner.routes)


def build_app(db_url: str) -> FastAPI:
    app = create_app(Settings(db_url=db_url, broker_url=None, workers=False))
    if "/tickets/{ticket_id}/attachments" not in set(_route_paths(app.routes)):
        app.include_router(router)
    return app


def _request(reporter: str) -> TicketRequest:
    return TicketRequest(
        location="Plant room B1",
        problem_type="hvac",
        urgency="high",
        description="Chiller 1 trips on high discharge temperature",
        reporter=reporter,
        contact="wu@example.com",
    )


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    app = build_app(db_url)
    now = datetime.now(UTC)  # tokens are checked against the real clock
    with TestClient(app) as client:
        tokens: dict[str, str] = {}
        with app.state.sessions() as s, s.begin():
            for name, role in [
                (ENGINEER, Role.engineer),
                (OTHER_ENGINEER, Role.engineer),
                (CUSTOMER, Role.customer),
                (OTHER_CUSTOMER, Role.customer),
                ("sup.wang", Role.supervisor),
            ]:
                user = create_user(s, name, role, now=now)
                tokens[name] = issue_token(s, user, now=now).token
            mine = create_ticket(
                s, _request(CUSTOMER), source="api", actor=CUSTOMER, now=now, reporter_user=CUSTOMER
            ).ticket
            mine.assignee = ENGINEER
            theirs = create_ticket(s, _request("someone"), source="api", actor="x", now=now).ticket
            theirs.assignee = OTHER_ENGINEER
            s.flush()
            ids = mine.id, theirs.id
        yield World(client, ids[0], ids[1], tokens)


def test_photo_round_trips_byte_for_byte(world: World) -> None:
    photo = tiny_jpeg(b"pump seal")
    r = world.upload(ENGINEER, photo, filename="C:\\fakepath\\seal.jpg", caption="leaking seal")
    assert r.status_code == 201, r.text
    body = r.json()
    sha = hashlib.sha256(photo).hexdigest()
    assert body["sha256"] == sha
    assert body["kind"] == "photo"
    assert body["content_type"] == "image/jpeg"
    assert body["size"] == len(photo)
    assert body["filename"] == "seal.jpg"  # the client's path is not kept
    assert body["caption"] == "leaking seal"
    assert body["uploaded_by"] == ENGINEER
    assert body["url"] == f"/tickets/{world.ticket_id}/attachments/{sha}"

    got = world.client.get(body["url"], headers=world.auth(ENGINEER))
    assert got.status_code == 200
    assert got.content == photo
    assert got.headers["content-type"] == "image/jpeg"
    assert got.headers["cache-control"] == "private"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["etag"].strip('"') == sha

    again = world.client.get(
        body["url"], headers=world.auth(ENGINEER) | {"If-None-Match": got.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""

    listed = world.client.get(
        f"/tickets/{world.ticket_id}/attachments", headers=world.auth(ENGINEER)
    )
    assert listed.status_code == 200
    assert listed.json() == [body]


def test_content_type_is_sniffed_not_declared(world: World) -> None:
    png = tiny_png()
    r = world.upload(
        ENGINEER, png, filename="scan", content_type="application/octet-stream", kind="document"
    )
    assert r.status_code == 201, r.text
    assert r.json()["content_type"] == "image/png"
    got = world.client.get(r.json()["url"], headers=world.auth(ENGINEER))
    assert got.headers["content-type"] == "image/png"


def test_same_photo_twice_is_one_blob_and_one_attachment(world: World) -> None:
    photo = tiny_jpeg(b"twice")
    first = world.upload(ENGINEER, photo)
    second = world.upload(ENGINEER, photo, caption="sent again")
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()  # the existing attachment, caption unchanged
    assert world.count(Blob) == 1
    assert world.count(Attachment) == 1
    assert [e.action for e in world.events()].count("attached") == 1

    # the same bytes as another kind, or on another ticket, are new attachments of one blob
    assert world.upload(ENGINEER, photo, kind="document").status_code == 201
    sup = world.upload("sup.wang", photo, ticket_id=world.other_ticket_id)
    assert sup.status_code == 201
    assert world.count(Blob) == 1
    assert world.count(Attachment) == 3


def test_signature_that_is_really_a_pdf_is_refused(world: World) -> None:
    r = world.upload(
        ENGINEER, PDF, kind="signature", filename="sig.png", content_type="application/pdf"
    )
    assert r.status_code == 422, r.text
    fields = r.json()["detail"]["fields"]
    assert [f["field"] for f in fields] == ["body.file"]
    assert "PDF" in fields[0]["problem"]
    assert "signature" in fields[0]["problem"]
    assert world.count(Blob) == world.count(Attachment) == 0


def test_declared_png_that_is_jpeg_is_refused(world: World) -> None:
    r = world.upload(ENGINEER, tiny_jpeg(), filename="x.png", content_type="image/png")
    assert r.status_code == 422, r.text
    (field,) = r.json()["detail"]["fields"]
    assert field["field"] == "body.file"
    assert "image/png" in field["problem"]
    assert "JPEG" in field["problem"]
    assert world.count(Blob) == 0


def test_oversize_upload_is_413_naming_the_limit(world: World) -> None:
    limit = MAX_BYTES["signature"]
    big = tiny_png() + b"\x00" * limit  # a PNG header, then padding past the limit
    r = world.upload(ENGINEER, big, kind="signature", filename="sig.png", content_type="image/png")
    assert r.status_code == 413, r.text
    assert "1 MiB" in r.text
    assert world.count(Blob) == 0
    # exactly at the limit is fine
    at_limit = big[:limit]
    r = world.upload(
        ENGINEER, at_limit, kind="signature", filename="sig.png", content_type="image/png"
    )
    assert r.status_code == 201, r.text


def test_engineer_not_assigned_sees_no_such_ticket(world: World) -> None:
    photo = tiny_jpeg(b"mine")
    url = world.upload(ENGINEER, photo).json()["url"]
    r = world.upload(OTHER_ENGINEER, tiny_jpeg(b"theirs"))
    assert r.status_code == 404, r.text
    base = f"/tickets/{world.ticket_id}/attachments"
    assert world.client.get(base, headers=world.auth(OTHER_ENGINEER)).status_code == 404
    assert world.client.get(url, headers=world.auth(OTHER_ENGINEER)).status_code == 404
    assert world.count(Attachment) == 1


def test_a_hash_from_another_ticket_gives_nothing(world: World) -> None:
    r = world.upload("sup.wang", tiny_jpeg(b"other job"), ticket_id=world.other_ticket_id)
    sha = r.json()["sha256"]
    # the engineer may see their own ticket, but that file is not attached to it
    got = world.client.get(
        f"/tickets/{world.ticket_id}/attachments/{sha}", headers=world.auth(ENGINEER)
    )
    assert got.status_code == 404
    assert got.content != tiny_jpeg(b"other job")


def test_customers_see_their_evidence_but_do_not_upload(world: World) -> None:
    url = world.upload(ENGINEER, tiny_jpeg(b"done")).json()["url"]
    r = world.upload(CUSTOMER, tiny_jpeg(b"from the customer"))
    # they reported it, so they may see it: a 403 that says who may upload (a 404 would lie)
    assert r.status_code == 403, r.text
    base = f"/tickets/{world.ticket_id}/attachments"
    assert world.client.get(base, headers=world.auth(CUSTOMER)).status_code == 200
    assert world.client.get(url, headers=world.auth(CUSTOMER)).status_code == 200

    stranger = world.upload(OTHER_CUSTOMER, tiny_jpeg(b"from a stranger"))
    assert stranger.status_code == 404
    assert world.client.get(url, headers=world.auth(OTHER_CUSTOMER)).status_code == 404
    assert world.count(Attachment) == 1


def test_attaching_appends_to_a_verified_history(world: World) -> None:
    photo = tiny_jpeg(b"history")
    before = world.events()
    r = world.upload(ENGINEER, photo, filename="gauge.jpg", caption="gauge reading")
    assert r.status_code == 201, r.text
    after = world.events()
    assert len(after) == len(before) + 1
    entry = after[-1]
    assert entry.action == "attached"
    assert entry.actor == ENGINEER
    assert entry.from_state == entry.to_state == "new"
    assert entry.data == {
        "sha256": hashlib.sha256(photo).hexdigest(),
        "kind": "photo",
        "size": len(photo),
        "content_type": "image/jpeg",
        "filename": "gauge.jpg",
    }
    with world.client.app.state.sessions() as s:  # type: ignore[attr-defined]
        ticket = s.get(Ticket, world.ticket_id)
        assert ticket is not None
        assert ticket.updated_at == entry.at
        report = audit.verify(s)
    assert report.ok, [str(b) for b in report.broken]
    assert report.entries >= len(after)


def test_no_token_is_401(world: World) -> None:
    base = f"/tickets/{world.ticket_id}/attachments"
    r = world.client.post(base, files={"file": ("a.jpg", tiny_jpeg(), "image/jpeg")})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert world.client.get(base).status_code == 401
    assert world.client.get(f"{base}/{'0' * 64}").status_code == 401
    bad = {"Authorization": "Bearer flt_not-a-token"}
    assert world.client.get(base, headers=bad).status_code == 401
    assert world.count(Blob) == 0


def test_unknown_kind_and_bad_hash_are_422(world: World) -> None:
    r = world.upload(ENGINEER, tiny_jpeg(), kind="video")
    assert r.status_code == 422
    assert "body.kind" in r.text
    r = world.client.get(
        f"/tickets/{world.ticket_id}/attachments/not-a-hash", headers=world.auth(ENGINEER)
    )
    assert r.status_code == 422


def test_two_uploads_of_one_file_at_once_store_one_blob(db_url: str) -> None:
    """Two transactions insert the same blob: the second waits for the first, then finds the
    blob there and goes on; neither fails on the primary key."""
    engine = make_engine(db_url)
    try:
        migrate(engine)
        factory = session_factory(engine)
        now = datetime.now(UTC)
        with factory() as s, s.begin():
            ids = [
                create_ticket(s, _request("r"), source="api", actor="r", now=now).ticket.id
                for _ in range(2)
            ]
        photo = tiny_jpeg(b"race")
        errors: list[BaseException] = []

        def upload(ticket_id: int) -> None:
            try:
                with factory() as s, s.begin():
                    ticket = s.get(Ticket, ticket_id)
                    assert ticket is not None
                    attach(s, ticket, kind="photo", data=photo, filename=None,
                           declared_type=None, caption=None, actor="eng", now=now)  # fmt: skip
            except BaseException as exc:  # the main thread reports it
                errors.append(exc)

        with factory() as first:
            first.begin()
            ticket = first.get(Ticket, ids[0])
            assert ticket is not None
            attach(first, ticket, kind="photo", data=photo, filename=None,
                   declared_type=None, caption=None, actor="eng", now=now)  # fmt: skip
            second = threading.Thread(target=upload, args=(ids[1],))
            second.start()
            time.sleep(0.5)
            assert second.is_alive()  # waiting on the first's uncommitted blob (or write lock)
            first.commit()
        second.join(30)
        assert not second.is_alive()
        assert errors == []
        with factory() as s:
            assert s.scalar(select(func.count()).select_from(Blob)) == 1
            assert s.scalar(select(func.count()).select_from(Attachment)) == 2
    finally:
        engine.dispose()
