"""rule decisions

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 20:45:04.175421
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import central.storage.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ticket_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("at", central.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("rules_file", sa.String(length=255), nullable=False),
        sa.Column("rules_version", sa.String(length=64), nullable=False),
        sa.Column("rule_ids", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.JSON(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_ticket_decisions_ticket_id"), "ticket_decisions", ["ticket_id"], unique=False
    )
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("tags", sa.JSON(), server_default="[]", nullable=False))
        batch.add_column(sa.Column("skills", sa.JSON(), server_default="[]", nullable=False))
        batch.add_column(sa.Column("priority_source", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("priority_score", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("rules_version", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("rules_version")
        batch.drop_column("priority_score")
        batch.drop_column("priority_source")
        batch.drop_column("skills")
        batch.drop_column("tags")
    op.drop_index(op.f("ix_ticket_decisions_ticket_id"), table_name="ticket_decisions")
    op.drop_table("ticket_decisions")
