"""The relational model. Schema changes go through an Alembic migration in central/migrations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.expression import false

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
    problem_type: Mapped[str | None] = mapped_column(String(64))
    urgency: Mapped[str | None] = mapped_column(String(16))
    # who reported it: a user's name when they signed in (their BOLA scope), else as typed
    reporter: Mapped[str | None] = mapped_column(String(128))
    reporter_user: Mapped[str | None] = mapped_column(String(128), index=True)
    contact: Mapped[str | None] = mapped_column(String(255))
    department: Mapped[str | None] = mapped_column(String(64))
    transfers: Mapped[int] = mapped_column(default=0, server_default="0")
    reopen_count: Mapped[int] = mapped_column(default=0, server_default="0")
    resolution: Mapped[str | None] = mapped_column(Text)
    completion_report: Mapped[str | None] = mapped_column(Text)
    signature_sha256: Mapped[str | None] = mapped_column(String(64))
    # sha256 of the customer's private link token: the token itself is shown once, never stored
    customer_token_hash: Mapped[str | None] = mapped_column(String(64))
    csat_score: Mapped[int | None]
    csat_comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None]
    verified_at: Mapped[datetime | None]
    # what the planners' rules decided (rules/classification.yaml, rules/priority.yaml)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    skills: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default="[]")
    priority_source: Mapped[str | None] = mapped_column(String(16))  # rules | manual | intake
    priority_score: Mapped[int | None]
    rules_version: Mapped[str | None] = mapped_column(String(64))
    dispatch_policy: Mapped[str | None] = mapped_column(String(64))  # dispatch.yaml's choice
    sla_policy: Mapped[str | None] = mapped_column(String(64))  # sla.yaml's choice
    # a follow-up job a rule opened beside this one (open_ticket)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    # dispatch: who holds an open offer (parallel offers: first to accept wins), how many offers
    # went unanswered or declined, and whether it now waits in the dispatcher's queue
    offered_to: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    dispatch_misses: Mapped[int] = mapped_column(default=0, server_default="0")
    needs_dispatcher: Mapped[bool] = mapped_column(default=False, server_default=false())
    # hand-offs: the first department to take the ticket coordinates it whatever its bounces;
    # a tripped circuit breaker (too many bounces, a repeat complaint) flags it
    coordinator: Mapped[str | None] = mapped_column(String(64))
    flagged: Mapped[str | None] = mapped_column(String(255))
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
    __table_args__ = (Index("ix_tickets_customer_token_hash", "customer_token_hash", unique=True),)


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
    # redeliveries of this event id: counted, never applied again
    duplicates: Mapped[int] = mapped_column(default=0, server_default="0")


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
    __table_args__ = (Index("ix_telemetry_batches_received", "received_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(128))
    device: Mapped[str] = mapped_column(String(128))
    asset: Mapped[str] = mapped_column(String(128))
    profile: Mapped[str | None] = mapped_column(String(128))  # the device profile the edge named
    seq: Mapped[int]
    event_time: Mapped[datetime]
    received_at: Mapped[datetime]
    samples: Mapped[int]  # stored as good
    quarantined: Mapped[int] = mapped_column(default=0, server_default=text("0"))


#: The readings, one row each, as few bytes as possible: no id and no batch id (the inbox above
#: holds those), so the table can be a TimescaleDB hypertable or time-partitioned and written
#: with COPY. central.telemetry decides and creates the physical layout; this is its shape.
TelemetrySample = Table(
    "telemetry_samples",
    Base.metadata,
    Column("time", UTCDateTime(timezone=True), nullable=False),
    Column("site", String(128), nullable=False),
    Column("device", String(128), nullable=False),
    Column("asset", String(128), nullable=False),
    Column("metric", String(128), nullable=False),
    Column("value", Double, nullable=False),
    Column("quality", String(16), nullable=False),
    Index("ix_telemetry_asset_metric_time", "asset", "metric", "time"),
    Index("ix_telemetry_time_brin", "time", postgresql_using="brin"),
)


class TelemetryQuarantine(Base):
    """Readings refused by the screening (central.domain.quarantine), each with its reason:
    kept to be looked at and counted, never mixed with the good ones."""

    __tablename__ = "telemetry_quarantine"
    __table_args__ = (Index("ix_quarantine_received", "received_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = mapped_column(String(128))
    device: Mapped[str] = mapped_column(String(128))
    asset: Mapped[str] = mapped_column(String(128))
    metric: Mapped[str | None] = mapped_column(String(128))
    time: Mapped[str] = mapped_column(String(64))  # as received
    value: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime]


class User(Base):
    """Someone (or some edge site) that signs in: the role decides what they may do."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(255))  # argon2id; None: tokens only
    department: Mapped[str | None] = mapped_column(String(64))
    site: Mapped[str | None] = mapped_column(String(128))  # a device's own site
    contact: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]


class ApiToken(Base):
    """A bearer token: only its sha256 is kept, so a copy of the database signs nobody in."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    label: Mapped[str | None] = mapped_column(String(128))
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Blob(Base):
    """Uploaded content stored once by its sha256 (a photo sent twice is one blob)."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class Attachment(Base):
    """A photo, signature or document on a ticket; the content is the blob of that hash."""

    __tablename__ = "attachments"
    __table_args__ = (
        UniqueConstraint("ticket_id", "sha256", "kind", name="uq_attachments_ticket_blob_kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    kind: Mapped[str] = mapped_column(String(16))  # photo | signature | document
    filename: Mapped[str | None] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    caption: Mapped[str | None] = mapped_column(String(500))
    uploaded_by: Mapped[str] = mapped_column(String(128))
    uploaded_at: Mapped[datetime]


class PartUsed(Base):
    """A spare part fitted on the job (what the stores and the invoice need)."""

    __tablename__ = "parts_used"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    part_no: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(255))
    quantity: Mapped[float] = mapped_column(Double)
    unit: Mapped[str] = mapped_column(String(16))
    recorded_by: Mapped[str] = mapped_column(String(128))
    recorded_at: Mapped[datetime]


class IdempotencyKey(Base):
    """One state-changing request per (caller, Idempotency-Key): its fingerprint and, once it
    finished, the response a retry gets back."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("principal", "key", name="uq_idempotency_principal_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal: Mapped[str] = mapped_column(String(160))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None]  # None while the first request is still running
    response: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(index=True)
    locked_until: Mapped[datetime | None]


class WebhookDelivery(Base):
    """Each accepted inbound webhook delivery, so a replayed delivery creates nothing twice."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("source", "delivery_id", name="uq_webhook_source_delivery"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    delivery_id: Mapped[str] = mapped_column(String(128))
    # the delivery's body: the same id with another body is a sender's bug, refused, not merged
    body_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime]
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))


class TicketDecision(Base):
    """What a rule set decided for a ticket, and by which rules: `fieldloop rules explain`."""

    __tablename__ = "ticket_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))  # classification | priority
    rules_file: Mapped[str] = mapped_column(String(255))
    rules_version: Mapped[str] = mapped_column(String(64))  # the file's sha256
    rule_ids: Mapped[list[str]] = mapped_column(JSON)  # deciding rule first
    outcome: Mapped[dict[str, Any]] = mapped_column(JSON)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON)  # what the rules saw


class Engineer(Base):
    """A field engineer's dispatch profile (the user with the same username signs in)."""

    __tablename__ = "engineers"

    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    department: Mapped[str | None] = mapped_column(String(64))
    regions: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: everywhere
    skills: Mapped[dict[str, Any]] = mapped_column(default=dict)  # skill -> level 1-5
    certifications: Mapped[dict[str, Any]] = mapped_column(default=dict)  # name -> expiry|None
    shifts: Mapped[dict[str, Any]] = mapped_column(default=dict)  # day -> ["08:00-17:00"]
    home_lat: Mapped[float | None] = mapped_column(Double)
    home_lon: Mapped[float | None] = mapped_column(Double)
    lat: Mapped[float | None] = mapped_column(Double)  # last position the app sent
    lon: Mapped[float | None] = mapped_column(Double)
    location_at: Mapped[datetime | None]
    active: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime]


class EngineerLeave(Base):
    __tablename__ = "engineer_leave"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    engineer: Mapped[str] = mapped_column(ForeignKey("engineers.username"), index=True)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    reason: Mapped[str | None] = mapped_column(String(255))


class Site(Base):
    """Where jobs are: the position dispatch measures distance to, and the region it is in."""

    __tablename__ = "sites"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str | None] = mapped_column(String(64))
    lat: Mapped[float | None] = mapped_column(Double)
    lon: Mapped[float | None] = mapped_column(Double)


class DispatchOffer(Base):
    """A job offered to one engineer: accepted, declined, lapsed (no answer in time) or
    withdrawn (someone else accepted first)."""

    __tablename__ = "dispatch_offers"
    __table_args__ = (Index("ix_dispatch_offers_open_due", "state", "expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    engineer: Mapped[str] = mapped_column(String(128), index=True)
    round: Mapped[int]
    policy: Mapped[str | None] = mapped_column(String(64))
    offered_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16))  # open|accepted|declined|lapsed|withdrawn
    decided_at: Mapped[datetime | None]


class DispatchDecisionRow(Base):
    """Every dispatch decision with the ranked candidates, each constraint's pass/fail and
    each objective's score: what GET /tickets/{id}/dispatch explains."""

    __tablename__ = "dispatch_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(16))  # auto | override | batch | claim
    actor: Mapped[str] = mapped_column(String(128))
    policy: Mapped[str | None] = mapped_column(String(64))
    mode: Mapped[str | None] = mapped_column(String(16))
    rules_version: Mapped[str | None] = mapped_column(String(64))
    relaxed: Mapped[list[str]] = mapped_column(JSON, default=list)
    chosen: Mapped[list[str]] = mapped_column(JSON, default=list)
    reason: Mapped[str] = mapped_column(Text)
    ranked: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    explanation: Mapped[list[str]] = mapped_column(JSON, default=list)  # in a dispatcher's words


class Notification(Base):
    """The outbox of messages to people and systems (offers to engineers, alerts to the
    dispatcher): written in the transaction that caused them, delivered after commit, retried
    until delivered, so a crash loses none."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_pending", "delivered_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))  # offer | offer_withdrawn | alert | ...
    recipient: Mapped[str] = mapped_column(String(128), index=True)  # a username or a role
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class TicketSla(Base):
    """The SLA policy and calendar pinned to a ticket when attached, with the rules version:
    editing sla.yaml later never changes what this ticket was promised."""

    __tablename__ = "ticket_sla"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    policy_id: Mapped[str] = mapped_column(String(64))
    rules_version: Mapped[str | None] = mapped_column(String(64))
    attached_at: Mapped[datetime]
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the SlaPolicy, as JSON
    calendar: Mapped[dict[str, Any]] = mapped_column(default=dict)  # Calendar + days_off
    breached: Mapped[bool] = mapped_column(default=False)  # any target breached (for reports)
    worst_stage: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class SlaTimer(Base):
    """A warning or an escalation due at a time: fired at most once per ticket and key, by
    whichever central process takes it first (row locks, SKIP LOCKED)."""

    __tablename__ = "sla_timers"
    __table_args__ = (
        UniqueConstraint("ticket_id", "key", name="uq_sla_timers_ticket_key"),
        Index(
            "ix_sla_timers_due",
            "due_at",
            postgresql_where=text("fired_at IS NULL"),
            sqlite_where=text("fired_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    key: Mapped[str] = mapped_column(String(160))
    kind: Mapped[str] = mapped_column(String(16))  # warning | escalation
    clock: Mapped[str] = mapped_column(String(64))
    percent: Mapped[float] = mapped_column(Double)
    to_role: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    due_at: Mapped[datetime]
    fired_at: Mapped[datetime | None]
    fired_by: Mapped[str | None] = mapped_column(String(128))


class SlaAlert(Base):
    """An alert about many tickets at once (a stage overdue too often): once per key."""

    __tablename__ = "sla_alerts"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    at: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
