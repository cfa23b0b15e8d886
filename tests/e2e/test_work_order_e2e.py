"""The whole work order on real components: a simulated chiller over Modbus TCP, the edge agent,
the machine's Mosquitto and PostgreSQL, central over HTTP. An IoT event becomes a ticket that a
dispatcher offers, an engineer declines, another takes through every field state with a photo,
parts and the customer's signature; the customer confirms and rates through the private link; a
supervisor closes; the audit chain verifies and `fieldloop audit verify` says so."""

from __future__ import annotations

import struct
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from support import Stack, eventually

from central.services.audit import verify
from fieldloop.cli import main
from fieldloop.topics import Topics
from simulators.scenarios import chiller_overheat

pytestmark = pytest.mark.integration

GPS = {"lat": 31.2304, "lon": 121.4737, "accuracy_m": 5.0}


def png(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    raw = (b"\x00" + b"\x10\x20\x30" * w) * h
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


async def test_iot_event_to_a_verified_closed_ticket_on_postgresql(
    mosquitto: str, pg_url: str, topics: Topics, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the fault holds long enough for the people to act while it is on
    scenario = chiller_overheat(start=0.5, ramp=1.0, hold=6.0, recover=1.0)
    async with Stack(
        tmp_path,
        broker_url=mosquitto,
        db_url=pg_url,
        topics=topics,
        scenario=scenario,
        sim_port=free_port(),
        http_port=free_port(),
    ) as stack:
        http = stack.http

        async def call(method: str, path: str, who: str | None, **kw: Any) -> dict[str, Any]:
            headers = {"Idempotency-Key": str(uuid.uuid4())}
            if who is not None:
                headers.update(stack.people[who])
            r = await http.request(method, path, headers=headers, **kw)
            assert r.status_code in (200, 201), f"{method} {path}: {r.status_code} {r.text}"
            return r.json()

        async def opened() -> list[dict] | None:
            return await stack.tickets(asset="CH-01") or None

        [ticket] = await eventually(opened, within=30, what="the sensor's ticket")
        tid, t = ticket["id"], f"/tickets/{ticket['id']}"
        assert ticket["source"] == "iot" and ticket["state"]["zh"] == "新建"

        # offered to eng.wu, who declines; offered to eng.li, who takes it
        await call("POST", f"{t}/dispatch", "disp.zhao", json={"engineer": "eng.wu"})
        await call("POST", f"{t}/decline", "eng.wu", json={"reason": "on another job"})
        await call("POST", f"{t}/dispatch", "disp.zhao", json={"engineer": "eng.li"})
        jobs = await call("GET", "/me/jobs", "eng.li")
        assert [j["id"] for j in jobs["items"]] == [tid]
        await call("POST", f"{t}/accept", "eng.li", json={})
        await call("POST", f"{t}/depart", "eng.li", json={"location": GPS})
        await call("POST", f"{t}/arrive", "eng.li", json={"location": GPS})
        await call("POST", f"{t}/start", "eng.li", json={"note": "alarm still on at the panel"})
        photo = await call(
            "POST",
            f"{t}/attachments",
            "eng.li",
            files={"file": ("tubes.png", png(32, 24), "image/png")},
            data={"kind": "photo", "caption": "fouled condenser tubes"},
        )
        parts = [{"part_no": "GSK-220", "description": "end-cover gasket", "quantity": 2}]
        await call("POST", f"{t}/wait-parts", "eng.li", json={"parts": parts})
        await call("POST", f"{t}/resume", "eng.li", json={})
        await call("POST", f"{t}/parts", "eng.li", json={"parts": parts})

        async def cleared() -> dict | None:
            tk = await stack.ticket(tid)
            return tk if not tk["fault_active"] else None

        await eventually(cleared, within=30, what="the fault to clear at the sensor")
        signature = await call(
            "POST",
            f"{t}/attachments",
            "eng.li",
            files={"file": ("sig.png", png(64, 16), "image/png")},
            data={"kind": "signature"},
        )
        await call(
            "POST",
            f"{t}/complete",
            "eng.li",
            json={
                "report": "Cleaned the tubes, new gasket.",
                "signature_sha256": signature["sha256"],
            },
        )
        await call("POST", f"{t}/request-verification", "eng.li", json={})

        link = (await call("POST", f"{t}/customer-link", "disp.zhao"))["follow_url"]
        token = link.removeprefix("/t/")
        assert (await call("GET", f"/track/{token}", None))["state"]["zh"] == "待验收"
        await call("POST", f"/track/{token}/confirm", None, json={"note": "cooling again"})
        await call("POST", f"/track/{token}/rating", None, json={"score": 5, "comment": "快"})
        closed = await call("POST", f"{t}/close", "sup.wang", json={"note": "reviewed"})
        assert closed["state"]["key"] == "closed" and closed["csat_score"] == 5

        detail = await stack.ticket(tid)
        assert [h["to_state"] for h in detail["history"] if h["to_state"] != h["from_state"]] == [
            "new", "dispatched", "new", "dispatched", "accepted", "en_route", "on_site",
            "in_progress", "waiting_parts", "in_progress", "completed", "pending_verification",
            "verified", "closed",
        ]  # fmt: skip
        assert detail["signature_sha256"] == signature["sha256"]
        assert [p["part_no"] for p in detail["parts"]] == ["GSK-220"]
        got = await http.get(photo["url"], headers=stack.people["sup.wang"])
        assert got.status_code == 200 and got.content == png(32, 24)
        arrive = next(h for h in detail["history"] if h["action"] == "arrive")
        assert arrive["data"]["gps"] == GPS and arrive["actor"] == "eng.li"
        with stack.central.app.state.sessions() as s:
            assert verify(s).ok

    assert main(["audit", "verify", "--db", pg_url]) == 0
    assert "OK" in capsys.readouterr().out
