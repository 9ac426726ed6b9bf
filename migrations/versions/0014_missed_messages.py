"""Missed-message digests: the direct messages and mentions waiting to be mailed, and what was
mailed (each at most once).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
PreciseDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade():
    op.create_table(
        "missed_messages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer,
                  sa.ForeignKey("users.id", ondelete="CASCADE",
                                name="fk_missed_messages_user"), nullable=False),
        sa.Column("conversation_id", sa.Integer,
                  sa.ForeignKey("conversations.id", ondelete="CASCADE",
                                name="fk_missed_messages_conversation"), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.Column("mentioned", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("mailed_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("user_id", "message_id", name="uq_missed_messages_user_message"),
    )
    op.create_index("ix_missed_messages_waiting", "missed_messages",
                    ["mailed_at", "created_at"])
    op.create_index("ix_missed_messages_conversation_id", "missed_messages",
                    ["conversation_id"])


def downgrade():
    op.drop_table("missed_messages")
