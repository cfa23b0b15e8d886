"""Central forgets idempotency keys after a day, from its own background task."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central.api.app import create_app
from central.services.idempotency import KEEP_FOR
from central.settings import Settings
from central.storage.db import make_engine, migrate, session_factory
from central.storage.models import IdempotencyKey

pytestmark = pytest.mark.integration


def test_keys_older_than_a_day_are_purged_at_start(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    now = datetime.now(UTC)
    with session_factory(engine)() as s, s.begin():
        for key, age in (("old", KEEP_FOR + timedelta(minutes=1)), ("fresh", timedelta(hours=1))):
            s.add(
                IdempotencyKey(
                    principal="eng.li", key=key, fingerprint="0" * 64, status_code=200,
                    response=b"{}", created_at=now - age,
                )
            )  # fmt: skip
    engine.dispose()
    with TestClient(create_app(Settings(db_url=db_url, broker_url=None))) as client:
        sessions = client.app.state.sessions  # type: ignore[attr-defined]
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while True:
            with sessions() as s:
                keys = set(s.execute(select(IdempotencyKey.key)).scalars())
            if keys == {"fresh"} or datetime.now(UTC) > deadline:
                break
            time.sleep(0.05)
        assert keys == {"fresh"}
