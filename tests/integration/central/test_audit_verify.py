"""`fieldloop audit verify` on SQLite and PostgreSQL: a clean history verifies; a history row
edited, deleted from the middle or from the end in the database is caught and named."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from central.domain.lifecycle import Action
from central.ingest.events import ingest
from central.services.tickets import Step, act
from central.storage.db import make_engine, migrate, session_factory
from fieldloop.cli import main
from fieldloop.messages import Event, EventKind

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def event(asset: str) -> Event:
    return Event(
        site="plant-1", device=f"dev-{asset}", asset=asset, event_time=T0, seq=1,
        kind=EventKind.fault_opened, rule_id="chiller.discharge_temp.high",
        title="Discharge temperature high",
    )  # fmt: skip


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """Two tickets, each accepted and taken on site: four entries each."""
    engine = make_engine(db_url)
    migrate(engine)
    factory = session_factory(engine)
    for asset in ("CH-01", "CH-02"):
        outcome = ingest(factory, event(asset), T0)
        assert outcome.ticket_id is not None
        for i, action in enumerate((Action.accept, Action.depart, Action.arrive), start=1):
            with factory() as s, s.begin():
                act(
                    s,
                    outcome.ticket_id,
                    Step(action),
                    caller=None,
                    actor="eng.li",
                    now=T0 + timedelta(minutes=i),
                )
    try:
        yield engine
    finally:
        engine.dispose()


def verify(db_url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", "verify", "--db", db_url])
    return code, capsys.readouterr().out


def test_a_clean_history_verifies(
    db_url: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify(db_url, capsys) == (0, "audit verify: 2 ticket(s), 8 entries: OK\n")


def tamper(engine: Engine, sql: str) -> None:
    """What someone with the database owner's rights can do: lift the append-only guard first."""
    with engine.begin() as c:
        if engine.dialect.name == "postgresql":
            c.execute(text("ALTER TABLE ticket_events DISABLE TRIGGER ticket_events_append_only"))
        else:
            c.execute(text("DROP TRIGGER ticket_events_no_update"))
            c.execute(text("DROP TRIGGER ticket_events_no_delete"))
        c.execute(text(sql))


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ticket_events SET actor = 'someone.else' WHERE ticket_id = 2 AND seq = 2",
        "DELETE FROM ticket_events WHERE ticket_id = 1 AND seq = 4",
    ],
)
def test_the_database_refuses_to_change_history(engine: Engine, sql: str) -> None:
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as c:
        c.execute(text(sql))


def test_an_edited_entry_is_named(
    db_url: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper(
        engine, "UPDATE ticket_events SET actor = 'someone.else' WHERE ticket_id = 2 AND seq = 2"
    )
    code, out = verify(db_url, capsys)
    assert code == 1
    assert "BROKEN ticket #2: entry 2: content does not match its hash (altered)" in out
    assert "ticket #1" not in out
    assert out.endswith("FAILED: 1 ticket(s) with a broken chain\n")


def test_a_deleted_middle_entry_is_named(
    db_url: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper(engine, "DELETE FROM ticket_events WHERE ticket_id = 1 AND seq = 2")
    code, out = verify(db_url, capsys)
    assert code == 1
    assert "BROKEN ticket #1: entry 3: expected entry 2, found 3" in out


def test_a_deleted_last_entry_is_caught_by_the_anchor(
    db_url: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper(engine, "DELETE FROM ticket_events WHERE ticket_id = 1 AND seq = 4")
    code, out = verify(db_url, capsys)
    assert code == 1
    assert (
        "BROKEN ticket #1: entry 4: the history ends at entry 3 but the ticket records 4 "
        "entries (entries deleted)"
    ) in out


def test_a_database_without_tickets_is_refused_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["audit", "verify", "--db", f"sqlite:///{tmp_path / 'empty.db'}"])
    assert code == 2
    assert "cannot read the tickets at sqlite:///" in capsys.readouterr().err
