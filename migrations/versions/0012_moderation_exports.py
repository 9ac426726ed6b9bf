"""Moderation and your own data (issue 32): the earlier texts of edited messages, reports of
messages to the site admins, and users' data exports.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

NOW = sa.text("CURRENT_TIMESTAMP")
BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
PreciseDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade():
    op.create_table(
        "message_edits",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("replaced_at", PreciseDateTime, nullable=False),
    )
    op.create_index("ix_message_edits_message", "message_edits", ["message_id", "replaced_at"])
    op.create_table(
        "message_reports",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("conversation_id", sa.Integer,
                  sa.ForeignKey("conversations.id", ondelete="CASCADE",
                                name="fk_message_reports_conversation"), nullable=False),
        sa.Column("reporter_id", sa.Integer,
                  sa.ForeignKey("users.id", ondelete="CASCADE",
                                name="fk_message_reports_reporter"), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("open_key", sa.String(4), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False, server_default=NOW),
        sa.Column("resolved_by_id", sa.Integer,
                  sa.ForeignKey("users.id", ondelete="SET NULL",
                                name="fk_message_reports_resolver"), nullable=True),
        sa.Column("resolved_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("reporter_id", "message_id", "open_key",
                            name="uq_message_report_open"),
    )
    op.create_index("ix_message_reports_message_id", "message_reports", ["message_id"])
    op.create_index("ix_message_reports_status_created", "message_reports",
                    ["status", "created_at"])
    op.create_table(
        "data_exports",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer,
                  sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_data_exports_user"),
                  nullable=False),
        sa.Column("day", sa.String(10), nullable=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("file_key", sa.String(40), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False, server_default=NOW),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("user_id", "day", name="uq_data_export_day"),
    )
    op.create_index("ix_data_exports_user_id", "data_exports", ["user_id"])
    op.create_index("ix_data_exports_expires_at", "data_exports", ["expires_at"])


def downgrade():
    op.drop_table("data_exports")
    op.drop_table("message_reports")
    op.drop_table("message_edits")
