"""Usage events keep the Converse call's requestMetadata, so that usage can be grouped by it.

Revision ID: 0005_request_metadata
Revises: 0004_chaos
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_request_metadata"
down_revision = "0004_chaos"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Events stored before this revision had none: an empty JSON object.
    with op.batch_alter_table("usage_events") as batch:
        batch.add_column(sa.Column("request_metadata", sa.Text, nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_column("request_metadata")
