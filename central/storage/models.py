"""The relational model. Schema changes go through an Alembic migration in central/migrations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from central.storage.types import UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}  # noqa: RUF012


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(32), index=True)
    state_entered_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(16))  # iot | api | web | webhook
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(64))
    priority: Mapped[str | None] = mapped_column(String(8))
    severity: Mapped[str | None] = mapped_column(String(16))
    location: Mapped[str | None] = mapped_column(String(255))
    site: Mapped[str | None] = mapped_column(String(128))
    asset_id: Mapped[str | None] = mapped_column(String(128), index=True)
    device_id: Mapped[str | None] = mapped_column(String(128))
    rule_id: Mapped[str | None] = mapped_column(String(128))
    assignee: Mapped[str | None] = mapped_column(String(128))
    # "site|asset|rule" while the ticket is open, NULL once closed or cancelled: the unique
    # constraint makes "one open ticket per (asset, rule) episode" hold across central replicas.
    open_episode_key: Mapped[str | None] = mapped_column(String(400), unique=True)
    fault_active: Mapped[bool] = mapped_column(default=False)
    fault_opened_at: Mapped[datetime | None]
    fault_cleared_at: Mapped[datetime | None]
    occurrences: Mapped[int] = mapped_column(default=1)
    readings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)
    # The head of the history chain, written with every entry: a chain whose last entries were
    # deleted still links up, but no longer ends where the ticket says it does.
    history_len: Mapped[int] = mapped_column(default=0, server_default="0")
    history_head: Mapped[str | None] = mapped_column(String(64))

    history: Mapped[list[TicketEvent]] = relationship(
        back_populates="ticket", order_by="TicketEvent.seq", cascade="all, delete-orphan"
    )

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class TicketEvent(Base):
    """Append-only, hash-chained history of one ticket: who did what, when, and why."""

    __tablename__ = "ticket_events"
    __table_args__ = (UniqueConstraint("ticket_id", "seq", name="uq_ticket_events_ticket_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    seq: Mapped[int]
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    ticket: Mapped[Ticket] = relationship(back_populates="history")


class EdgeEvent(Base):
    """The inbox: every edge event ever accepted, keyed by its id so a redelivery is a no-op."""

    __tablename__ = "edge_events"
    __table_args__ = (Index("ix_edge_events_device_rule", "site", "device", "rule_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(128))
    device: Mapped[str] = mapped_column(String(128))
    asset: Mapped[str] = mapped_column(String(128))
    rule_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int]
    event_time: Mapped[datetime]
    received_at: Mapped[datetime]
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    payload: Mapped[dict[str, Any]]


class DeadLetter(Base):
    """Input that could not be accepted, kept with the reason so nothing vanishes silently."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(index=True)
    source: Mapped[str] = mapped_column(String(32))
    topic: Mapped[str | None] = mapped_column(String(512))
    message_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(Text)


class TelemetryBatchRow(Base):
    """The telemetry inbox: one row per batch id, so a resent batch stores nothing twice."""

    __tablename__ = "telemetry_batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(128))
    device: Mapped[str] = mapped_column(String(128))
    asset: Mapped[str] = mapped_column(String(128))
    seq: Mapped[int]
    event_time: Mapped[datetime]
    received_at: Mapped[datetime]
    samples: Mapped[int]


class TelemetrySample(Base):
    """Readings as the edge reported them (the telemetry store of the embedded default; the
    production store with TimescaleDB and partitions is a later migration)."""

    __tablename__ = "telemetry_samples"
    __table_args__ = (Index("ix_telemetry_asset_metric_time", "asset", "metric", "time"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("telemetry_batches.id"), index=True)
    time: Mapped[datetime]
    site: Mapped[str] = mapped_column(String(128))
    device: Mapped[str] = mapped_column(String(128))
    asset: Mapped[str] = mapped_column(String(128))
    metric: Mapped[str] = mapped_column(String(128))
    value: Mapped[float] = mapped_column(Double)
    quality: Mapped[str] = mapped_column(String(16))
