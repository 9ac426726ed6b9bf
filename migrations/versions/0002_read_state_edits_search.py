"""Read state, edited and deleted messages, case-insensitive usernames, message search indexes.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PreciseDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade():
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("participants") as batch:
        batch.add_column(sa.Column("last_read_message_id", sa.String(36), nullable=True))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("edited_at", PreciseDateTime, nullable=True))
        batch.add_column(sa.Column("deleted_at", PreciseDateTime, nullable=True))
    if dialect in ("postgresql", "sqlite"):
        # MariaDB's default collation already compares usernames without case.
        op.execute("CREATE UNIQUE INDEX uq_users_username_lower ON users (lower(username))")
    if dialect == "postgresql":
        op.execute("CREATE INDEX ix_messages_text_search ON messages "
                   "USING gin (to_tsvector('simple', text))")
    elif dialect in ("mysql", "mariadb"):
        op.execute("CREATE FULLTEXT INDEX ix_messages_text_search ON messages (text)")


def downgrade():
    dialect = op.get_bind().dialect.name
    if dialect in ("postgresql", "mysql", "mariadb"):
        op.drop_index("ix_messages_text_search", table_name="messages")
    if dialect in ("postgresql", "sqlite"):
        op.drop_index("uq_users_username_lower", table_name="users")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("edited_at")
    with op.batch_alter_table("participants") as batch:
        batch.drop_column("last_read_message_id")
