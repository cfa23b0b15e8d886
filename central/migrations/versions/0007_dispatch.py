"""dispatch: engineers, leave, sites, offers, dispatch decisions, the notification outbox

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import central.storage.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_T = central.storage.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "engineers",
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=True),
        sa.Column("regions", sa.JSON(), nullable=False),
        sa.Column("skills", sa.JSON(), nullable=False),
        sa.Column("certifications", sa.JSON(), nullable=False),
        sa.Column("shifts", sa.JSON(), nullable=False),
        sa.Column("home_lat", sa.Double(), nullable=True),
        sa.Column("home_lon", sa.Double(), nullable=True),
        sa.Column("lat", sa.Double(), nullable=True),
        sa.Column("lon", sa.Double(), nullable=True),
        sa.Column("location_at", _T(timezone=True), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", _T(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("username"),
    )
    op.create_table(
        "engineer_leave",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("engineer", sa.String(length=128), nullable=False),
        sa.Column("starts_at", _T(timezone=True), nullable=False),
        sa.Column("ends_at", _T(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["engineer"], ["engineers.username"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_engineer_leave_engineer", "engineer_leave", ["engineer"])
    op.create_table(
        "sites",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=True),
        sa.Column("lat", sa.Double(), nullable=True),
        sa.Column("lon", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "dispatch_offers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("engineer", sa.String(length=128), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("policy", sa.String(length=64), nullable=True),
        sa.Column("offered_at", _T(timezone=True), nullable=False),
        sa.Column("expires_at", _T(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("decided_at", _T(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dispatch_offers_ticket_id", "dispatch_offers", ["ticket_id"])
    op.create_index("ix_dispatch_offers_engineer", "dispatch_offers", ["engineer"])
    op.create_index("ix_dispatch_offers_open_due", "dispatch_offers", ["state", "expires_at"])
    op.create_table(
        "dispatch_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("at", _T(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("policy", sa.String(length=64), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=True),
        sa.Column("rules_version", sa.String(length=64), nullable=True),
        sa.Column("relaxed", sa.JSON(), nullable=False),
        sa.Column("chosen", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("ranked", sa.JSON(), nullable=False),
        sa.Column("explanation", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dispatch_decisions_ticket_id", "dispatch_decisions", ["ticket_id"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", _T(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=128), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _T(timezone=True), nullable=False),
        sa.Column("delivered_at", _T(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_notifications_recipient", "notifications", ["recipient"])
    op.create_index("ix_notifications_ticket_id", "notifications", ["ticket_id"])
    op.create_index(
        "ix_notifications_pending", "notifications", ["delivered_at", "next_attempt_at"]
    )
    # plain ADD COLUMN on both databases: a batch on SQLite would copy and drop tickets, which
    # the tables referring to it forbid
    op.add_column(
        "tickets", sa.Column("offered_to", sa.JSON(), server_default="[]", nullable=False)
    )
    op.add_column(
        "tickets", sa.Column("dispatch_misses", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "tickets",
        sa.Column("needs_dispatcher", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("needs_dispatcher")
        batch.drop_column("dispatch_misses")
        batch.drop_column("offered_to")
    for table in ("notifications", "dispatch_decisions", "dispatch_offers", "sites",
                  "engineer_leave", "engineers"):  # fmt: skip
        op.drop_table(table)
