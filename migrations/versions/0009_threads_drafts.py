"""Threads and drafts: a message's thread (its root's id) and whether a reply is also in the
main flow, a root's summary of its replies; who follows which thread and how far they read it;
drafts per conversation and thread.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
PreciseDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade():
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("thread_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("also_to_conversation", sa.Boolean, nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("reply_count", sa.Integer, nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("last_reply_at", PreciseDateTime, nullable=True))
        batch.add_column(sa.Column("thread_participants", sa.JSON, nullable=True))
        batch.create_index("ix_messages_conversation_thread",
                           ["conversation_id", "thread_id", "created_at", "id"])
    op.create_table(
        "thread_follows",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer,
                  sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_thread_follows_user"),
                  nullable=False),
        sa.Column("conversation_id", sa.Integer,
                  sa.ForeignKey("conversations.id", ondelete="CASCADE",
                                name="fk_thread_follows_conversation"), nullable=False),
        sa.Column("thread_id", sa.String(36), nullable=False),
        sa.Column("following", sa.Boolean, nullable=False, server_default="1"),
        sa.Column("last_read_message_id", sa.String(36), nullable=True),
        sa.Column("updated_at", PreciseDateTime, nullable=False,
                  server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.UniqueConstraint("user_id", "thread_id", name="uq_thread_follow"),
    )
    op.create_index("ix_thread_follows_conversation_thread", "thread_follows",
                    ["conversation_id", "thread_id"])
    op.create_table(
        "drafts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer,
                  sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_drafts_user"),
                  nullable=False),
        sa.Column("conversation_id", sa.Integer,
                  sa.ForeignKey("conversations.id", ondelete="CASCADE",
                                name="fk_drafts_conversation"), nullable=False),
        sa.Column("thread_id", sa.String(36), nullable=False, server_default=""),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("updated_at", PreciseDateTime, nullable=False,
                  server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.UniqueConstraint("user_id", "conversation_id", "thread_id", name="uq_draft"),
    )
    op.create_index("ix_drafts_conversation_id", "drafts", ["conversation_id"])


def downgrade():
    op.drop_table("drafts")
    op.drop_table("thread_follows")
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_conversation_thread")
        for column in ("thread_participants", "last_reply_at", "reply_count",
                       "also_to_conversation", "thread_id"):
            batch.drop_column(column)
