"""Central's settings: every one a ``FIELDLOOP_*`` environment variable (or a CLI flag)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FIELDLOOP_", extra="ignore")

    env: Literal["development", "production"] = "development"
    db_url: str = Field(
        "sqlite:///data/fieldloop.db",
        description="SQLAlchemy URL: sqlite:///path.db or postgresql+psycopg://user@host/db",
    )
    broker_url: str | None = Field(
        "mqtt://127.0.0.1:1883", description="MQTT broker carrying edge events; empty = no ingest"
    )
    topic_root: str = "fieldloop"
    consumer_client_id: str = "fieldloop-central"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    migrate_on_start: bool = True
