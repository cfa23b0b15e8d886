"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from central.storage.db import make_engine, migrate
from central.storage.models import Base

pytestmark = pytest.mark.integration


def test_migrated_schema_matches_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        migrate(engine)  # running it again is a no-op, as at every start
    finally:
        engine.dispose()


def test_downgrade_to_base_removes_everything(db_url: str) -> None:
    engine = make_engine(db_url)
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
