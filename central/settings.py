"""Central's settings: every one a ``FIELDLOOP_*`` environment variable (or a CLI flag)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fieldloop.brokers import parse_broker_url
from fieldloop.profiles import default_profiles_dir
from fieldloop.rules.policies import check_zone


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
    consumer_client_id: str = Field(
        "fieldloop-central", description="MQTT client id: different for every central process"
    )
    consumer_group: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.-]{0,64}$",
        description="several central processes splitting the edge traffic: the same group name "
        "in each (MQTT 5 shared subscriptions, $share/<group>/...; Mosquitto 2 or any MQTT 5 "
        "broker). Empty: one central, with a persistent session of its own",
    )
    broker_reconnect_max: float = Field(
        30.0, gt=0, le=600,
        description="longest wait, seconds, between attempts to reach the broker (the wait "
        "doubles from 0.5 s after each failure)",
    )  # fmt: skip
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    migrate_on_start: bool = True
    rules_dir: Path | None = Field(
        Path(__file__).resolve().parent.parent / "rules",
        description="the planners' decision rules (classification.yaml, priority.yaml), "
        "watched and reloaded when they change; empty: no rules",
    )
    rules_engine: Literal["durable", "reference"] = Field(
        "durable",
        description="durable: the rules run on durable-rules in a supervised worker process; "
        "reference: the pure-Python evaluator (same decisions, no worker)",
    )
    timezone: str = Field(
        "UTC",
        description="the sites' IANA time zone (e.g. Asia/Shanghai): the `hour` and `weekday` "
        "the rules see are local time here",
    )
    iot_reopen_window: timedelta = Field(
        timedelta(hours=24),
        description="the same fault on the same asset this soon after its ticket closed "
        "reopens that ticket (seconds or ISO 8601, e.g. PT24H)",
    )
    iot_auto_resolve: bool = Field(
        True, description="a fault that clears before anyone is dispatched closes its ticket"
    )
    public_reporting: bool = Field(
        True, description="serve the problem-report web form (/report) without signing in"
    )
    webhook_secrets: Annotated[dict[str, list[str]], NoDecode] = Field(
        default_factory=dict,
        description="inbound webhook sources and their HMAC secrets as JSON, e.g. "
        '{"callcentre": ["<secret>"]}; two secrets while rotating',
    )
    webhook_replay_window: int = Field(
        300, ge=10, le=3600, description="seconds a signed webhook delivery stays valid"
    )

    @field_validator("webhook_secrets", "notify_webhooks", mode="before")
    @classmethod
    def _json(cls, v: object, info: ValidationInfo) -> object:
        # from the environment: JSON, and an empty variable means none (not a start-up crash)
        if isinstance(v, str):
            if not v.strip():
                return {} if info.field_name == "webhook_secrets" else []
            try:
                return json.loads(v)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not JSON: {exc}") from None
        return v

    @field_validator("rules_dir", mode="before")
    @classmethod
    def _no_rules(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v  # empty: run without rules

    @field_validator(
        "iot_reopen_window",
        "telemetry_max_future",
        "telemetry_max_age",
        "telemetry_retention",
        "telemetry_compress_after",
        mode="before",
    )
    @classmethod
    def _seconds(cls, v: object) -> object:
        if isinstance(v, str) and v.strip().replace(".", "", 1).isdigit():
            return float(v)  # plain seconds, as the description promises (or ISO 8601)
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return check_zone(v)

    notify_webhooks: Annotated[list[dict[str, str]], NoDecode] = Field(
        default_factory=list,
        description="systems told of every offer and alert, as JSON: "
        '[{"url": "https://...", "secret": "<HMAC secret>"}] (signed like inbound webhooks)',
    )
    workers: bool = Field(
        True,
        description="run the background workers in this process: the offer sweeper, the SLA "
        "scheduler, the notification sender and housekeeping. false: serve the API (and consume "
        "edge events) only, beside at least one central that runs them (they are replica-safe)",
    )
    offer_sweep_every: float = Field(
        1.0, gt=0, le=60, description="seconds between sweeps for unanswered dispatch offers"
    )

    sla_sweep_every: float = Field(
        1.0, gt=0, le=60, description="seconds between sweeps for due SLA warnings/escalations"
    )

    profiles_dir: Path | None = Field(
        default_factory=default_profiles_dir,
        description="the device profiles (the edge's device_profiles/): a reading of a metric "
        "its device's profile does not have is quarantined; empty: metrics are not checked",
    )
    telemetry_max_future: timedelta = Field(
        timedelta(minutes=10),
        description="a reading timed further ahead of central's clock is quarantined "
        "(seconds or ISO 8601)",
    )
    telemetry_max_age: timedelta = Field(
        timedelta(days=30),
        description="a reading older than this on arrival is quarantined: longer than any edge "
        "outbox keeps it (seconds or ISO 8601)",
    )
    telemetry_retention: timedelta = Field(
        timedelta(days=400),
        description="readings are kept this long (TimescaleDB: a retention policy; PostgreSQL: "
        "whole daily partitions dropped; SQLite: rows deleted)",
    )
    telemetry_compress_after: timedelta = Field(
        timedelta(days=7), description="TimescaleDB: chunks older than this are compressed"
    )

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, v: str | None) -> str | None:
        if v:
            parse_broker_url(v)  # a wrong URL or a missing ca/cert/key file stops the start here
        return v or None

    @field_validator("profiles_dir", mode="before")
    @classmethod
    def _no_profiles(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @model_validator(mode="after")
    def _late_within_kept(self) -> Self:
        if self.telemetry_max_age > self.telemetry_retention:
            raise ValueError(
                "FIELDLOOP_TELEMETRY_MAX_AGE must not exceed FIELDLOOP_TELEMETRY_RETENTION "
                "(a reading accepted late would land in a day already dropped)"
            )
        return self

    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest JSON or form body")
    max_upload_bytes: int = Field(
        21 * 1_048_576, ge=1024, description="largest multipart upload (photos, signatures)"
    )
