"""policies chosen by the rules, and follow-up tickets opened by them

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("dispatch_policy", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("sla_policy", sa.String(length=64), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with its reference in place; a batch "create_foreign_key" would
        # copy and drop the tickets table, which the tables referring to it forbid
        op.execute("ALTER TABLE tickets ADD COLUMN parent_id INTEGER REFERENCES tickets (id)")
    else:
        op.add_column("tickets", sa.Column("parent_id", sa.Integer(), nullable=True))
        op.create_foreign_key("fk_tickets_parent_id", "tickets", "tickets", ["parent_id"], ["id"])
    op.create_index("ix_tickets_parent_id", "tickets", ["parent_id"])


def downgrade() -> None:
    op.drop_index("ix_tickets_parent_id", table_name="tickets")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_tickets_parent_id", "tickets", type_="foreignkey")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("parent_id")
        batch.drop_column("sla_policy")
        batch.drop_column("dispatch_policy")
