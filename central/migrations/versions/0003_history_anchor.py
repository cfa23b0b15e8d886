"""the history chain's head on each ticket (length and last hash), backfilled

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 19:25:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("history_len", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("history_head", sa.String(length=64), nullable=True))
    # tickets written before this revision: their chain's current end becomes their anchor
    op.execute(
        "UPDATE tickets SET "
        "history_len = coalesce((SELECT max(seq) FROM ticket_events e "
        "WHERE e.ticket_id = tickets.id), 0), "
        "history_head = (SELECT hash FROM ticket_events e WHERE e.ticket_id = tickets.id "
        "ORDER BY seq DESC LIMIT 1)"
    )


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("history_head")
        batch.drop_column("history_len")
