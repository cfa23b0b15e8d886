"""Alembic environment: uses the connection handed over by central.storage.db.migrate, or the
URL in FIELDLOOP_DB_URL when run as plain ``alembic`` from the command line."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from central.storage.db import make_engine
from central.storage.models import Base
from central.telemetry.layout import include_name

config = context.config
target_metadata = Base.metadata


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        include_name=include_name,  # the telemetry store's daily partitions
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = make_engine(os.environ.get("FIELDLOOP_DB_URL", "sqlite:///data/fieldloop.db"))
    with engine.begin() as conn:
        _migrate(conn)


run()
