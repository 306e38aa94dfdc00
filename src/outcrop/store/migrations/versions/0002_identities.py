"""Identities: SigV4 access keys and Bedrock API keys (hashed), each with an optional policy.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_keys",
        sa.Column("access_key_id", sa.String(128), primary_key=True),
        sa.Column("secret_access_key", sa.String(128), nullable=False),
        sa.Column("account", sa.String(12), nullable=False),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("policy", sa.Text),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False, unique=True),
        sa.Column("account", sa.String(12), nullable=False),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("policy", sa.Text),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("access_keys")
