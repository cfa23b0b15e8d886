"""Engines and sessions for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def normalize_url(url: str) -> str:
    """Accept postgres:// and postgresql:// as users write them; we drive psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # an acked event must survive power loss
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            if conn.get_execution_options().get(_LAZY):
                # see lazy_commit(): this transaction's commit need not reach the disk itself
                conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
                conn.info[_LAZY] = True
            # pysqlite's deferred BEGIN lets two writers read then both try to write; take the
            # write lock up front so concurrent transactions serialise instead of failing.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        @event.listens_for(engine, "checkin")
        def _sqlite_checkin(dbapi_conn: Any, record: Any) -> None:
            if record.info.pop(_LAZY, False):
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA synchronous=FULL")
                cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


_LAZY = "fieldloop_lazy_commit"


@contextmanager
def lazy_transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction whose commit does not wait for the disk: for bookkeeping that is worthless
    on its own, like an idempotency claim. It is still made durable by the next ordinary commit
    (SQLite's WAL and PostgreSQL's WAL are written in order, and a synchronous commit flushes
    everything before it), so the durable effect it guards can never outlive it. What a crash
    can lose is only a claim whose effect never committed."""
    with factory() as session, session.begin():
        conn = session.connection(execution_options={_LAZY: True})
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        # on SQLite the begin hook saw the option; the pool's checkin restores FULL afterwards
        yield session


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    with factory() as session, session.begin():
        yield session


MIGRATION_LOCK = 0x46_4C_4D_49  # "FLMI": the advisory lock key of schema migrations


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic (run at start and by the tests)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # several central processes starting at once: one migrates, the others wait for it
            # and then find nothing to do (the lock ends with this transaction)
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
