"""Metering: usage events (one per invocation) and their per-minute/hour/day rollups.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_KEY = ("account", "granularity", "tag_key", "period_us", "source_region", "model_dim", "profile_arn",
        "foundation_model", "identity", "tag_value")


def upgrade() -> None:
    op.create_table(
        "usage_events",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("time_us", sa.BigInteger, nullable=False),
        sa.Column("account", sa.String(12), nullable=False),
        sa.Column("source_region", sa.String(32), nullable=False),
        sa.Column("inference_region", sa.String(32)),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("model_id", sa.String(2048), nullable=False),
        sa.Column("model_dim", sa.String(256), nullable=False),
        sa.Column("profile_arn", sa.String(256)),
        sa.Column("profile_id", sa.String(128)),
        sa.Column("profile_type", sa.String(16)),
        sa.Column("foundation_model", sa.String(128), nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("ttft_ms", sa.Integer),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(64)),
        sa.Column("cost_pusd", sa.BigInteger, nullable=False),
        sa.Column("identity", sa.String(2048), nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
    )
    op.create_index("ix_usage_events_account_time", "usage_events", ["account", "time_us"])
    op.create_table(
        "usage_rollups",
        sa.Column("account", sa.String(12), primary_key=True),
        sa.Column("granularity", sa.String(1), primary_key=True),
        sa.Column("tag_key", sa.String(128), primary_key=True),
        sa.Column("period_us", sa.BigInteger, primary_key=True),
        sa.Column("source_region", sa.String(32), primary_key=True),
        sa.Column("model_dim", sa.String(256), primary_key=True),
        sa.Column("profile_arn", sa.String(256), primary_key=True),
        sa.Column("foundation_model", sa.String(128), primary_key=True),
        sa.Column("identity", sa.String(512), primary_key=True),
        sa.Column("tag_value", sa.String(256), primary_key=True),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in (
            "events", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
            "client_errors", "server_errors", "throttles", "latency_ms", "cost_pusd")),
    )


def downgrade() -> None:
    op.drop_table("usage_rollups")
    op.drop_index("ix_usage_events_account_time", "usage_events")
    op.drop_table("usage_events")
