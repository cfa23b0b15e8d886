"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from central.storage.db import make_engine, migrate
from central.storage.models import Base
from central.telemetry.layout import include_name

pytestmark = pytest.mark.integration


def test_migrated_schema_matches_models(any_store_url: str) -> None:
    engine = make_engine(any_store_url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_name": include_name})
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
        migrate(engine)  # running it again is a no-op, as at every start
    finally:
        engine.dispose()


def test_downgrade_to_base_removes_everything(any_store_url: str) -> None:
    engine = make_engine(any_store_url)
    try:
        migrate(engine)
        from alembic import command
        from alembic.config import Config

        from central.storage.db import MIGRATIONS

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()


def test_0003_anchors_the_history_written_before_it(empty_db_url: str) -> None:
    """Tickets from before the anchor columns get their chain's current end as their anchor,
    so `audit verify` holds them to it from then on."""
    from datetime import UTC, datetime

    from sqlalchemy import text

    engine = make_engine(empty_db_url)
    try:
        migrate(engine, "0002")
        at = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
        with engine.begin() as c:
            for tid in (1, 2):
                c.execute(
                    text(
                        "INSERT INTO tickets (id, state, state_entered_at, source, title, "
                        "description, fault_active, occurrences, readings, created_at, "
                        "updated_at, version) VALUES (:id, 'new', :at, 'api', 't', 'd', "
                        "false, 1, '{}', :at, :at, 1)"
                    ),
                    {"id": tid, "at": at},
                )
            for seq in (1, 2, 3):  # ticket 2 has no history yet
                c.execute(
                    text(
                        "INSERT INTO ticket_events (ticket_id, seq, at, actor, action, data, "
                        "prev_hash, hash) VALUES (1, :seq, :at, 'a', 'x', '{}', 'p', :h)"
                    ),
                    {"seq": seq, "at": at, "h": f"hash-{seq}"},
                )
        migrate(engine)
        with engine.connect() as c:
            rows = c.execute(
                text("SELECT id, history_len, history_head FROM tickets ORDER BY id")
            ).all()
        assert [tuple(r) for r in rows] == [(1, 3, "hash-3"), (2, 0, None)]
    finally:
        engine.dispose()


def test_three_processes_starting_at_once_migrate_once(pg_url: str) -> None:
    """Central processes started together each run the migrations at start: on PostgreSQL an
    advisory lock lets one migrate while the others wait, then find nothing left to do."""
    import threading

    from sqlalchemy import text

    engines = [make_engine(pg_url) for _ in range(3)]
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def start(engine: object) -> None:
        barrier.wait()
        try:
            migrate(engine)  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert errors == []
        with engines[0].connect() as conn:
            heads = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        assert len(heads) == 1
    finally:
        for e in engines:
            e.dispose()
