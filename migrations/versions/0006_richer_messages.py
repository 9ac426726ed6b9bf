"""Richer messages: rendered HTML, kinds (system lines), replies, mentions, reactions and
attachments.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
PreciseDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
EmojiString = sa.String(64).with_variant(mysql.VARCHAR(64, collation="utf8mb4_bin"),
                                         "mysql", "mariadb")


def upgrade():
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="text"))
        batch.add_column(sa.Column("html", sa.Text, nullable=True))
        batch.add_column(sa.Column("reply_to_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("mentions", sa.JSON, nullable=True))
        batch.add_column(sa.Column("system", sa.JSON, nullable=True))
    op.create_table(
        "reactions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.Integer,
                  sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_reactions_user"),
                  nullable=False),
        sa.Column("emoji", EmojiString, nullable=False),
        sa.Column("created_at", PreciseDateTime, nullable=False,
                  server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.UniqueConstraint("message_id", "user_id", "emoji", name="uq_reaction"),
    )
    op.create_index("ix_reactions_message_id", "reactions", ["message_id"])
    op.create_table(
        "attachments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("conversation_id", sa.Integer,
                  sa.ForeignKey("conversations.id", ondelete="CASCADE",
                                name="fk_attachments_conversation"), nullable=False),
        sa.Column("uploader_id", sa.Integer,
                  sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_attachments_uploader"),
                  nullable=False),
        sa.Column("message_id", sa.String(36), nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(127), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("width", sa.Integer, nullable=True),
        sa.Column("height", sa.Integer, nullable=True),
        sa.Column("has_thumbnail", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime, nullable=False,
                  server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.Column("deleted_at", PreciseDateTime, nullable=True),
    )
    op.create_index("ix_attachments_conversation_id", "attachments", ["conversation_id"])
    op.create_index("ix_attachments_uploader_id", "attachments", ["uploader_id"])
    op.create_index("ix_attachments_message_id", "attachments", ["message_id"])


def downgrade():
    op.drop_table("attachments")
    op.drop_table("reactions")
    with op.batch_alter_table("messages") as batch:
        for column in ("system", "mentions", "reply_to_id", "html", "kind"):
            batch.drop_column(column)
