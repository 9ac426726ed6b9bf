"""Slash commands: /name in a conversation's composer calls a service (issue 33).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

NOW = sa.text("CURRENT_TIMESTAMP")


def upgrade():
    op.create_table(
        "slash_commands",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("conversation_id", sa.Integer,
                  sa.ForeignKey("conversations.id", ondelete="CASCADE",
                                name="fk_slash_commands_conversation"), nullable=True),
        sa.Column("name", sa.String(33), nullable=False),
        sa.Column("description", sa.String(200), nullable=False, server_default=""),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("bot_user_id", sa.Integer,
                  sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_slash_commands_bot"),
                  nullable=False),
        sa.Column("created_by_id", sa.Integer,
                  sa.ForeignKey("users.id", ondelete="SET NULL",
                                name="fk_slash_commands_creator"), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False, server_default=NOW),
        sa.UniqueConstraint("conversation_id", "name",
                            name="uq_slash_commands_conversation_name"),
    )
    op.create_index("ix_slash_commands_conversation_id", "slash_commands", ["conversation_id"])


def downgrade():
    op.drop_table("slash_commands")
