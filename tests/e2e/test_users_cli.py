"""`fieldloop users add|token|list` against a real database (SQLite and PostgreSQL): the first
admin bootstrapped from the command line signs in through the real API, a device gets a token
confined to its site, mistakes exit 2 saying what is wrong, and only hashes are stored."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from central.api.app import create_app
from central.settings import Settings
from central.storage.db import make_engine, session_factory
from central.storage.models import ApiToken, User
from fieldloop.cli import main

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"


def users(
    db_url: str,
    *argv: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch | None = None,
    stdin: str | None = None,
) -> tuple[int, str, str]:
    """Run ``fieldloop users ARGV --db URL`` in-process; (exit code, stdout, stderr)."""
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    capsys.readouterr()
    code = main(["users", *argv, "--db", db_url])
    out, err = capsys.readouterr()
    return code, out, err


def token_on(out: str) -> str:
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert lines[0].startswith("flt_"), out
    return lines[0]


def stored_users(db_url: str) -> dict[str, User]:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as s:
            return {u.username: u for u in s.execute(select(User)).scalars()}
    finally:
        engine.dispose()


def stored_tokens(db_url: str) -> list[ApiToken]:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as s:
            return list(s.execute(select(ApiToken).order_by(ApiToken.id)).scalars())
    finally:
        engine.dispose()


def raw_token_rows(db_url: str) -> list[tuple[object, ...]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text("SELECT * FROM api_tokens"))]
    finally:
        engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_first_admin_is_added_from_stdin_and_signs_in_through_the_api(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = users(
        db_url,
        "add",
        "admin",
        "--role",
        "admin",
        "--password-stdin",
        capsys=capsys,
        monkeypatch=monkeypatch,
        stdin=PASSWORD + "\n",
    )
    assert code == 0, err
    assert "added admin (admin)" in err
    assert out == ""  # no --token: nothing secret printed

    admin = stored_users(db_url)["admin"]
    assert admin.role == "admin" and admin.active
    assert admin.password_hash is not None and admin.password_hash.startswith("$argon2id$")
    assert PASSWORD not in admin.password_hash
    assert stored_tokens(db_url) == []

    with TestClient(create_app(Settings(db_url=db_url, broker_url=None, workers=False))) as client:
        wrong = client.post("/auth/token", json={"username": "admin", "password": "not it at all"})
        assert wrong.status_code == 401
        r = client.post("/auth/token", json={"username": "admin", "password": PASSWORD})
        assert r.status_code == 200, r.text
        signed_in = r.json()
        assert (signed_in["username"], signed_in["role"]) == ("admin", "admin")
        me = client.get("/me", headers=bearer(signed_in["access_token"]))
        assert me.status_code == 200, me.text
        assert (me.json()["username"], me.json()["role"]) == ("admin", "admin")
        assert client.get("/me").status_code == 401


def test_a_device_needs_a_site_and_gets_a_token_confined_to_it(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = users(
        db_url, "add", "edge-1", "--role", "device", "--no-password", "--token", capsys=capsys
    )
    assert code == 2
    assert "--site" in err
    assert out == ""
    assert "edge-1" not in stored_users(db_url)  # nothing half-made

    code, out, err = users(
        db_url,
        "add",
        "edge-1",
        "--role",
        "device",
        "--site",
        "plant-1",
        "--no-password",
        "--token",
        capsys=capsys,
    )
    assert code == 0, err
    token = token_on(out)
    assert "expires " in err
    device = stored_users(db_url)["edge-1"]
    assert (device.role, device.site, device.password_hash) == ("device", "plant-1", None)

    with TestClient(create_app(Settings(db_url=db_url, broker_url=None, workers=False))) as client:
        me = client.get("/me", headers=bearer(token))
        assert me.status_code == 200, me.text
        assert (me.json()["username"], me.json()["role"], me.json()["site"]) == (
            "edge-1",
            "device",
            "plant-1",
        )
        event = {
            "site": "plant-1",
            "device": "chiller-1",
            "asset": "CH-01",
            "event_time": "2026-11-23T08:00:00+00:00",
            "seq": 1,
            "kind": "fault_opened",
            "rule_id": "chiller.discharge_temp.high",
            "title": "Discharge temperature high",
        }
        posted = client.post("/edge/events", json=event, headers=bearer(token))
        assert posted.status_code == 200, posted.text
        assert posted.json()["result"] == "committed" and posted.json()["ticket_id"] is not None
        elsewhere = client.post(
            "/edge/events", json={**event, "site": "plant-2"}, headers=bearer(token)
        )
        assert elsewhere.status_code == 403
        assert "plant-1" in elsewhere.text
        # a device has no password: it cannot sign in with one
        refused = client.post("/auth/token", json={"username": "edge-1", "password": "x" * 12})
        assert refused.status_code == 401


def test_users_token_prints_a_new_token_and_refuses_unknown_users(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = users(
        db_url,
        "add",
        "edge-1",
        "--role",
        "device",
        "--site",
        "plant-1",
        "--no-password",
        "--token",
        capsys=capsys,
    )
    assert code == 0, err
    first = token_on(out)

    code, out, err = users(db_url, "token", "edge-1", "--label", "gw-01", capsys=capsys)
    assert code == 0, err
    second = token_on(out)
    assert second != first
    tokens = stored_tokens(db_url)
    assert [t.label for t in tokens] == [None, "gw-01"]

    with TestClient(create_app(Settings(db_url=db_url, broker_url=None, workers=False))) as client:
        for token in (first, second):  # a new token does not revoke the old one
            me = client.get("/me", headers=bearer(token))
            assert me.status_code == 200 and me.json()["username"] == "edge-1", me.text

    code, out, err = users(db_url, "token", "nobody", capsys=capsys)
    assert code == 2
    assert out == ""
    assert "'nobody' does not exist" in err
    assert len(stored_tokens(db_url)) == 2


def test_a_duplicate_user_and_a_short_password_exit_2_saying_why(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("add", "eng.li", "--role", "engineer", "--password-stdin")
    code, _, err = users(db_url, *args, capsys=capsys, monkeypatch=monkeypatch, stdin=PASSWORD)
    assert code == 0, err
    first_hash = stored_users(db_url)["eng.li"].password_hash

    code, out, err = users(
        db_url, *args, capsys=capsys, monkeypatch=monkeypatch, stdin="another password 1\n"
    )
    assert code == 2
    assert "'eng.li' already exists" in err
    assert out == ""
    assert stored_users(db_url)["eng.li"].password_hash == first_hash  # untouched

    code, out, err = users(
        db_url,
        "add",
        "eng.wu",
        "--role",
        "engineer",
        "--password-stdin",
        capsys=capsys,
        monkeypatch=monkeypatch,
        stdin="short1234\n",  # 9 characters
    )
    assert code == 2
    assert "at least 10 characters" in err
    assert "eng.wu" not in stored_users(db_url)

    code, _, err = users(
        db_url,
        "add",
        "eng.wu",
        "--role",
        "engineer",
        "--password-stdin",
        capsys=capsys,
        monkeypatch=monkeypatch,
        stdin="exactly10!\n",  # the minimum is allowed
    )
    assert code == 0, err


def test_users_list_shows_each_user_with_role_department_and_site(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    added = [
        ("admin", ["--role", "admin", "--password-stdin"]),
        ("eng.li", ["--role", "engineer", "--department", "hvac", "--password-stdin"]),
        ("edge-1", ["--role", "device", "--site", "plant-1", "--no-password"]),
    ]
    for name, flags in added:
        code, _, err = users(
            db_url,
            "add",
            name,
            *flags,
            capsys=capsys,
            monkeypatch=monkeypatch,
            stdin=PASSWORD + "\n",
        )
        assert code == 0, err

    code, out, err = users(db_url, "list", capsys=capsys)
    assert code == 0, err
    assert out.splitlines() == [
        "admin\tadmin",
        "edge-1\tdevice site=plant-1",
        "eng.li\tengineer dept=hvac",
    ]


def test_only_hashes_are_stored_and_ttl_days_sets_the_expiry(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = users(
        db_url,
        "add",
        "edge-1",
        "--role",
        "device",
        "--site",
        "plant-1",
        "--no-password",
        "--token",
        "--ttl-days",
        "7",
        capsys=capsys,
    )
    assert code == 0, err
    first = token_on(out)
    before = datetime.now(UTC)
    code, out, err = users(db_url, "token", "edge-1", "--ttl-days", "0.5", capsys=capsys)
    after = datetime.now(UTC)
    assert code == 0, err
    second = token_on(out)

    tokens = stored_tokens(db_url)
    assert [t.token_hash for t in tokens] == [
        hashlib.sha256(first.encode()).hexdigest(),
        hashlib.sha256(second.encode()).hexdigest(),
    ]
    # the token itself is nowhere in the table, in any column
    for row in raw_token_rows(db_url):
        for value in row:
            assert first not in str(value) and second not in str(value)
            assert first.removeprefix("flt_") not in str(value)

    t1, t2 = tokens
    assert abs((t1.expires_at - t1.issued_at) - timedelta(days=7)) <= timedelta(minutes=1)
    assert abs(t1.expires_at - (datetime.now(UTC) + timedelta(days=7))) <= timedelta(minutes=1)
    assert before - timedelta(minutes=1) <= t2.issued_at <= after + timedelta(minutes=1)
    assert abs(t2.expires_at - (before + timedelta(hours=12))) <= timedelta(minutes=1)
    assert f"expires {t2.expires_at.isoformat(timespec='seconds')}" in err

    # the default lifetime is 90 days
    code, out, err = users(db_url, "token", "edge-1", capsys=capsys)
    assert code == 0, err
    default = stored_tokens(db_url)[-1]
    assert abs((default.expires_at - default.issued_at) - timedelta(days=90)) <= timedelta(
        minutes=1
    )


def test_a_token_lifetime_beyond_a_year_exits_2_and_issues_nothing(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = users(
        db_url,
        "add",
        "edge-1",
        "--role",
        "device",
        "--site",
        "plant-1",
        "--no-password",
        "--token",
        "--ttl-days",
        "400",
        capsys=capsys,
    )
    assert code == 2
    assert "token lifetime must be between 1 s and 366 days" in err
    assert out == ""
    # the user and its token are one transaction: neither was kept
    assert "edge-1" not in stored_users(db_url)
    assert stored_tokens(db_url) == []


@pytest.mark.parametrize("ttl", ["1e10", "inf"])
def test_an_absurd_token_lifetime_exits_2_instead_of_a_traceback(
    sqlite_url: str, ttl: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = users(
        sqlite_url,
        "add",
        "edge-1",
        "--role",
        "device",
        "--site",
        "plant-1",
        "--no-password",
        capsys=capsys,
    )
    assert code == 0, err
    code, out, err = users(sqlite_url, "token", "edge-1", "--ttl-days", ttl, capsys=capsys)
    assert code == 2
    assert out == ""
    assert "366 days" in err
    assert stored_tokens(sqlite_url) == []


def test_an_unreachable_database_exits_2_naming_it(
    postgres: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = "postgresql+psycopg://postgres@127.0.0.1:5432/fl_no_such_database_here"
    code, out, err = users(missing, "list", capsys=capsys)
    assert code == 2
    assert out == ""
    assert "fieldloop users: cannot use the database at" in err
    assert "fl_no_such_database_here" in err
