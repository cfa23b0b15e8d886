"""SLA: policies pinned to tickets, durable timers, alerts; hand-off coordinator and flags

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import central.storage.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_T = central.storage.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "ticket_sla",
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("policy_id", sa.String(length=64), nullable=False),
        sa.Column("rules_version", sa.String(length=64), nullable=True),
        sa.Column("attached_at", _T(timezone=True), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("calendar", sa.JSON(), nullable=False),
        sa.Column("breached", sa.Boolean(), nullable=False),
        sa.Column("worst_stage", sa.String(length=64), nullable=True),
        sa.Column("updated_at", _T(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("ticket_id"),
    )
    op.create_table(
        "sla_timers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("clock", sa.String(length=64), nullable=False),
        sa.Column("percent", sa.Double(), nullable=False),
        sa.Column("to_role", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("due_at", _T(timezone=True), nullable=False),
        sa.Column("fired_at", _T(timezone=True), nullable=True),
        sa.Column("fired_by", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id", "key", name="uq_sla_timers_ticket_key"),
    )
    op.create_index("ix_sla_timers_ticket_id", "sla_timers", ["ticket_id"])
    # only unfired timers are ever looked for by due time: a partial index stays small
    op.create_index(
        "ix_sla_timers_due", "sla_timers", ["due_at"],
        postgresql_where=sa.text("fired_at IS NULL"), sqlite_where=sa.text("fired_at IS NULL"),
    )  # fmt: skip
    op.create_table(
        "sla_alerts",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("at", _T(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.add_column("tickets", sa.Column("coordinator", sa.String(length=64), nullable=True))
    op.add_column("tickets", sa.Column("flagged", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("flagged")
        batch.drop_column("coordinator")
    op.drop_table("sla_alerts")
    op.drop_table("sla_timers")
    op.drop_table("ticket_sla")
