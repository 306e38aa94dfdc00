"""Chaos rules in the store, so that every server process applies the same ones.

Revision ID: 0004_chaos
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_chaos"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chaos_rules",
        sa.Column("rule_id", sa.String(32), primary_key=True),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("chaos_rules")
