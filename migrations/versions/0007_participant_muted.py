"""A participant can mute a conversation.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("participants") as batch:
        batch.add_column(sa.Column("muted", sa.Boolean, nullable=False, server_default="0"))


def downgrade():
    with op.batch_alter_table("participants") as batch:
        batch.drop_column("muted")
