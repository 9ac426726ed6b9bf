"""Conversations' last activity keeps fractions of a second on MySQL/MariaDB.

DATETIME there drops them by default, so two conversations active within the same second tied
in the conversation list. PostgreSQL and SQLite already keep them: nothing changes there.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        op.alter_column("conversations", "last_message_at", type_=mysql.DATETIME(fsp=6),
                        existing_type=sa.DateTime(), existing_nullable=True)


def downgrade():
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        op.alter_column("conversations", "last_message_at", type_=sa.DateTime(),
                        existing_type=mysql.DATETIME(fsp=6), existing_nullable=True)
