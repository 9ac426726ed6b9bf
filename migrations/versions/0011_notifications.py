"""Notifications (issue 30): a level and a timed mute per participant (replacing the muted
flag: muted becomes level "none" for good), the user's notification settings, and Web Push
subscriptions.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

NOW = sa.text("CURRENT_TIMESTAMP")
BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade():
    with op.batch_alter_table("participants") as batch:
        batch.add_column(sa.Column("notification_level", sa.String(8), nullable=False,
                                   server_default="default"))
        batch.add_column(sa.Column("muted_until", sa.DateTime, nullable=True))
    op.execute("UPDATE participants SET notification_level = 'none' WHERE muted = "
               + ("true" if op.get_bind().dialect.name == "postgresql" else "1"))
    with op.batch_alter_table("participants") as batch:
        batch.drop_column("muted")
        batch.create_check_constraint(
            "ck_participants_notification_level",
            "notification_level IN ('default', 'all', 'mentions', 'none')")

    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("dnd_until", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("quiet_hours_start", sa.String(5), nullable=True))
        batch.add_column(sa.Column("quiet_hours_end", sa.String(5), nullable=True))
        batch.add_column(sa.Column("quiet_hours_timezone", sa.String(64), nullable=True))
        batch.add_column(sa.Column("email_notifications", sa.Boolean, nullable=False,
                                   server_default="1"))
        batch.add_column(sa.Column("email_delay_minutes", sa.Integer, nullable=False,
                                   server_default="10"))

    op.create_table(
        "push_subscriptions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer,
                  sa.ForeignKey("users.id", ondelete="CASCADE",
                                name="fk_push_subscriptions_user"), nullable=False),
        sa.Column("session_id", BigId,
                  sa.ForeignKey("user_sessions.id", ondelete="CASCADE",
                                name="fk_push_subscriptions_session"), nullable=True),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("endpoint_hash", sa.String(64), nullable=False),
        sa.Column("p256dh", sa.String(128), nullable=False),
        sa.Column("auth", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False, server_default=NOW),
        sa.Column("last_used_at", sa.DateTime, nullable=True),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.UniqueConstraint("endpoint_hash", name="uq_push_subscriptions_endpoint_hash"),
    )
    op.create_index("ix_push_subscriptions_user", "push_subscriptions", ["user_id"])
    op.create_index("ix_push_subscriptions_session_id", "push_subscriptions", ["session_id"])


def downgrade():
    op.drop_table("push_subscriptions")
    with op.batch_alter_table("users") as batch:
        for column in ("email_delay_minutes", "email_notifications", "quiet_hours_timezone",
                       "quiet_hours_end", "quiet_hours_start", "dnd_until"):
            batch.drop_column(column)
    with op.batch_alter_table("participants") as batch:
        batch.add_column(sa.Column("muted", sa.Boolean, nullable=False, server_default="0"))
    op.execute("UPDATE participants SET muted = "
               + ("true" if op.get_bind().dialect.name == "postgresql" else "1")
               + " WHERE notification_level = 'none'")
    with op.batch_alter_table("participants") as batch:
        batch.drop_constraint("ck_participants_notification_level", type_="check")
        batch.drop_column("notification_level")
        batch.drop_column("muted_until")
