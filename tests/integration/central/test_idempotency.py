"""Idempotency-Key handling on SQLite and PostgreSQL: a retry gets the first answer and the work
is done once; a reused key, a concurrent duplicate, a refused request, a crashed first attempt
and a lost claim each end as Stripe's semantics say. Real databases and real threads throughout;
the handlers' work is inserting users, so "done once" is counted in a real table."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import Response
from fastapi.testclient import TestClient
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker

from central.api.idempotency import Handler, run_idempotent
from central.services import idempotency
from central.services.idempotency import Claimed, InProgress, fingerprint, purge_expired
from central.storage.db import make_engine, migrate, session_factory
from central.storage.models import IdempotencyKey, User

pytestmark = pytest.mark.integration

FP = fingerprint("POST", "/users", b'{"name": "tech"}')
OTHER_FP = fingerprint("POST", "/users", b'{"name": "other"}')


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    migrate(engine)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


class CreateUser:
    """A handler that inserts a user named after how often it ran, so a second run would both
    add a row and answer differently."""

    def __init__(self, prefix: str = "tech") -> None:
        self.prefix = prefix
        self.calls = 0

    def __call__(self, s: Session) -> tuple[int, Any]:
        self.calls += 1
        user = User(
            username=f"{self.prefix}-{self.calls}",
            display_name="Field Tech",
            role="engineer",
            created_at=datetime.now(UTC),
        )
        s.add(user)
        s.flush()
        return 201, {"id": user.id, "username": user.username, "created_at": user.created_at}


def users(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as s:
        return list(s.scalars(select(User.username).order_by(User.id)))


def key_rows(sessions: sessionmaker[Session]) -> list[IdempotencyKey]:
    with sessions() as s:
        return list(s.scalars(select(IdempotencyKey).order_by(IdempotencyKey.id)))


def run(
    sessions: sessionmaker[Session],
    handler: Handler,
    *,
    key: str | None = "k-1",
    principal: str = "alice",
    fp: str = FP,
) -> Response:
    return run_idempotent(
        sessions, principal=principal, key=key, request_fingerprint=fp, handler=handler
    )


def detail(response: Response) -> str:
    return json.loads(response.body)["detail"]


def test_without_a_key_every_call_runs(sessions: sessionmaker[Session]) -> None:
    handler = CreateUser()
    first, second = run(sessions, handler, key=None), run(sessions, handler, key=None)
    assert (first.status_code, json.loads(first.body)["username"]) == (201, "tech-1")
    assert (second.status_code, json.loads(second.body)["username"]) == (201, "tech-2")
    assert "idempotent-replayed" not in first.headers
    assert users(sessions) == ["tech-1", "tech-2"]
    assert key_rows(sessions) == []


def test_a_retry_gets_the_first_response_and_the_work_is_done_once(
    sessions: sessionmaker[Session],
) -> None:
    handler = CreateUser()
    first = run(sessions, handler)
    retry = run(sessions, handler)
    assert first.status_code == retry.status_code == 201
    assert retry.body == first.body  # byte for byte, timestamps included
    assert "idempotent-replayed" not in first.headers
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.headers["content-type"] == "application/json"
    assert handler.calls == 1
    assert users(sessions) == ["tech-1"]
    [row] = key_rows(sessions)
    assert (row.principal, row.key, row.status_code, row.response) == (
        "alice",
        "k-1",
        201,
        first.body,
    )
    assert row.locked_until is None


def test_the_same_key_on_a_different_request_is_a_422(sessions: sessionmaker[Session]) -> None:
    handler = CreateUser()
    run(sessions, handler)
    reused = run(sessions, handler, fp=OTHER_FP)
    assert reused.status_code == 422
    assert detail(reused) == (
        "Idempotency-Key 'k-1' was already used for a different request; "
        "use a new key for a new request"
    )
    assert handler.calls == 1


def test_a_concurrent_duplicate_is_told_to_retry_later(sessions: sessionmaker[Session]) -> None:
    entered, proceed = threading.Event(), threading.Event()
    create = CreateUser()

    def slow(s: Session) -> tuple[int, Any]:
        entered.set()
        # Wait before touching the database: on SQLite the first write takes the one write
        # lock, and the duplicate would queue behind it instead of being answered at once.
        assert proceed.wait(10), "the test never let the first request finish"
        return create(s)

    answers: list[Response] = []
    first = threading.Thread(target=lambda: answers.append(run(sessions, slow)), name="first")
    first.start()
    try:
        assert entered.wait(10)
        duplicate = run(sessions, CreateUser("dup"))
        assert duplicate.status_code == 409
        assert detail(duplicate) == (
            "a request with this Idempotency-Key is still being processed; retry later"
        )
        assert duplicate.headers["retry-after"] == "1"
    finally:
        proceed.set()
        first.join(10)
    assert not first.is_alive()
    assert [a.status_code for a in answers] == [201]
    later = run(sessions, CreateUser("late"))
    assert (later.body, later.headers["idempotent-replayed"]) == (answers[0].body, "true")
    assert users(sessions) == ["tech-1"]


def test_a_refusal_is_kept_and_replayed(sessions: sessionmaker[Session]) -> None:
    calls = 0

    def refuse(s: Session) -> tuple[int, Any]:
        nonlocal calls
        calls += 1
        CreateUser()(s)  # some work first: it must be rolled back with the refusal
        raise HTTPException(409, "ticket #7 is closed; reopen it first")

    first = run(sessions, refuse)
    retry = run(sessions, refuse)
    assert (first.status_code, detail(first)) == (409, "ticket #7 is closed; reopen it first")
    assert "idempotent-replayed" not in first.headers
    assert (retry.status_code, retry.body) == (409, first.body)
    assert retry.headers["idempotent-replayed"] == "true"
    assert calls == 1
    assert users(sessions) == []


def test_any_other_failure_frees_the_key_for_a_retry(sessions: sessionmaker[Session]) -> None:
    def crash(s: Session) -> tuple[int, Any]:
        CreateUser()(s)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        run(sessions, crash)
    assert (users(sessions), key_rows(sessions)) == ([], [])
    retry = run(sessions, CreateUser())
    assert retry.status_code == 201 and "idempotent-replayed" not in retry.headers
    assert users(sessions) == ["tech-1"]


def claim_left_by_a_dead_process(
    sessions: sessionmaker[Session], *, locked_until: datetime
) -> None:
    with sessions() as s, s.begin():
        s.add(
            IdempotencyKey(
                principal="alice",
                key="k-1",
                fingerprint=FP,
                status_code=None,
                response=None,
                created_at=locked_until - timedelta(seconds=60),
                locked_until=locked_until,
            )
        )


def test_a_crashed_first_attempt_is_taken_over(sessions: sessionmaker[Session]) -> None:
    claim_left_by_a_dead_process(sessions, locked_until=datetime.now(UTC) - timedelta(seconds=1))
    handler = CreateUser()
    answer = run(sessions, handler)
    assert answer.status_code == 201 and "idempotent-replayed" not in answer.headers
    assert handler.calls == 1
    [row] = key_rows(sessions)
    assert (row.status_code, row.response, row.locked_until) == (201, answer.body, None)
    assert run(sessions, handler).headers["idempotent-replayed"] == "true"


def test_a_claim_still_locked_is_not_taken_over(sessions: sessionmaker[Session]) -> None:
    claim_left_by_a_dead_process(sessions, locked_until=datetime.now(UTC) + timedelta(seconds=30))
    handler = CreateUser()
    assert run(sessions, handler).status_code == 409
    assert handler.calls == 0


def test_only_one_retry_takes_over_a_dead_claim(sessions: sessionmaker[Session]) -> None:
    now = datetime.now(UTC)
    claim_left_by_a_dead_process(sessions, locked_until=now - timedelta(seconds=1))

    def claim() -> idempotency.ClaimResult:
        return idempotency.claim(
            sessions, principal="alice", key="k-1", request_fingerprint=FP, now=now
        )

    assert isinstance(claim(), Claimed)
    assert isinstance(claim(), InProgress)  # the first taker's fresh lock holds


def test_two_retries_racing_for_a_dead_claim_get_one_winner(pg_url: str) -> None:
    """Both read the expired claim before either writes: only the conditional update decides.
    PostgreSQL only: SQLite's BEGIN IMMEDIATE runs one claim after the other, so never races."""
    engine = make_engine(pg_url)
    migrate(engine)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    claim_left_by_a_dead_process(sessions, locked_until=now - timedelta(seconds=1))
    at_update, proceed = threading.Event(), threading.Event()

    @event.listens_for(engine, "before_cursor_execute")
    def hold_the_first(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        # The first claimer stops after its read, just before its UPDATE.
        if (
            statement.startswith("UPDATE idempotency_keys")
            and threading.current_thread().name == "first"
        ):
            at_update.set()
            assert proceed.wait(10)

    def claim() -> idempotency.ClaimResult:
        return idempotency.claim(
            sessions, principal="alice", key="k-1", request_fingerprint=FP, now=now
        )

    results: list[idempotency.ClaimResult] = []
    first = threading.Thread(target=lambda: results.append(claim()), name="first")
    first.start()
    try:
        assert at_update.wait(10)
        second = claim()  # reads the same expired lock, updates and commits
    finally:
        proceed.set()
        first.join(10)
        engine.dispose()
    assert isinstance(second, Claimed)
    assert isinstance(results[0], InProgress)


def test_a_claim_lost_while_running_leaves_no_effect(sessions: sessionmaker[Session]) -> None:
    create = CreateUser()

    def outlived_its_lock(s: Session) -> tuple[int, Any]:
        # Another process decided this run was dead and took the key over (before our first
        # write, so SQLite's single write lock is free for it).
        with sessions() as other, other.begin():
            other.execute(
                update(IdempotencyKey).values(
                    locked_until=datetime.now(UTC) + timedelta(seconds=60)
                )
            )
        return create(s)

    answer = run(sessions, outlived_its_lock)
    assert answer.status_code == 409
    assert create.calls == 1
    assert users(sessions) == []  # the run's work was rolled back with the lost claim
    [row] = key_rows(sessions)
    assert (row.status_code, row.response) == (None, None)


def test_principals_have_keys_of_their_own(sessions: sessionmaker[Session]) -> None:
    for_alice, for_bob = CreateUser("alice"), CreateUser("bob")
    alice = run(sessions, for_alice, principal="alice", fp=FP)
    bob = run(sessions, for_bob, principal="bob", fp=OTHER_FP)
    assert alice.status_code == bob.status_code == 201
    assert run(sessions, for_alice, principal="alice", fp=FP).body == alice.body
    assert run(sessions, for_bob, principal="bob", fp=OTHER_FP).body == bob.body
    assert (for_alice.calls, for_bob.calls) == (1, 1)
    assert users(sessions) == ["alice-1", "bob-1"]


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "1 to 255 characters long, not 0"),
        ("k" * 256, "1 to 255 characters long, not 256"),
        ("schlüssel", "printable ASCII only"),
        ("a\tb", "printable ASCII only"),
    ],
    ids=["empty", "too-long", "non-ascii", "control-char"],
)
def test_a_bad_key_is_a_400(sessions: sessionmaker[Session], key: str, why: str) -> None:
    handler = CreateUser()
    answer = run(sessions, handler, key=key)
    assert answer.status_code == 400
    assert detail(answer).startswith("the Idempotency-Key header must be") and why in detail(answer)
    assert (handler.calls, key_rows(sessions)) == (0, [])


def test_the_longest_key_is_accepted(sessions: sessionmaker[Session]) -> None:
    key = "".join(chr(c) for c in range(0x20, 0x7F)) * 3  # every printable character, 285
    assert run(sessions, CreateUser(), key=key[:255]).status_code == 201
    assert [r.key for r in key_rows(sessions)] == [key[:255]]


def test_purge_forgets_keys_older_than_the_cutoff(sessions: sessionmaker[Session]) -> None:
    now = datetime.now(UTC)
    with sessions() as s, s.begin():
        for name, age in [("old", timedelta(hours=25)), ("new", timedelta(hours=1))]:
            s.add(
                IdempotencyKey(
                    principal="alice",
                    key=name,
                    fingerprint=FP,
                    status_code=201,
                    response=b"{}",
                    created_at=now - age,
                    locked_until=None,
                )
            )
    with sessions() as s, s.begin():
        assert purge_expired(s, now - idempotency.KEEP_FOR) == 1
    assert [r.key for r in key_rows(sessions)] == ["new"]


def test_the_fingerprint_tells_requests_apart() -> None:
    base = fingerprint("POST", "/tickets", b'{"a":1}')
    assert len(base) == 64 and int(base, 16) >= 0
    assert fingerprint("post", "/tickets", b'{"a":1}') == base
    assert base != fingerprint("PUT", "/tickets", b'{"a":1}')
    assert base != fingerprint("POST", "/tickets/1", b'{"a":1}')
    assert base != fingerprint("POST", "/tickets", b'{"a":2}')
    # the parts cannot slide into each other
    assert fingerprint("POST", "/ab", b"") != fingerprint("POST", "/a", b"b")


# --- through a FastAPI route, as the real routes will use it ------------------------------------


async def raw_body(request: Request) -> bytes:
    return await request.body()


@pytest.fixture
def client(sessions: sessionmaker[Session]) -> Iterator[TestClient]:
    app = FastAPI()
    create = CreateUser()

    @app.post("/users", status_code=201)
    def create_user(
        payload: dict[str, str],
        body: Annotated[bytes, Depends(raw_body)],
        key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> Response:
        return run_idempotent(
            sessions,
            principal=payload.get("as", "alice"),
            key=key,
            request_fingerprint=fingerprint("POST", "/users", body),
            handler=create,
        )

    with TestClient(app) as c:
        yield c


def test_a_route_replays_through_fastapi(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    first = client.post("/users", json={"as": "alice"}, headers={"Idempotency-Key": "abc"})
    retry = client.post("/users", json={"as": "alice"}, headers={"Idempotency-Key": "abc"})
    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.content == first.content
    assert retry.headers["idempotent-replayed"] == "true"
    changed = client.post(
        "/users", json={"as": "alice", "x": "y"}, headers={"Idempotency-Key": "abc"}
    )
    assert changed.status_code == 422
    assert client.post("/users", json={"as": "alice"}).status_code == 201  # no key: runs again
    assert users(sessions) == ["tech-1", "tech-2"]
