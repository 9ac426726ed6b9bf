"""Channels: a conversation's visibility, description, archived flag and creator; a
participant's role; who deleted a message. Every existing group becomes private, its creator
(from the activity log) its owner, else its earliest member.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

conversations = sa.table(
    "conversations",
    sa.column("id", sa.Integer),
    sa.column("is_group", sa.Boolean),
    sa.column("visibility", sa.String),
    sa.column("created_by_id", sa.Integer),
)
participants = sa.table(
    "participants",
    sa.column("id", sa.Integer),
    sa.column("conversation_id", sa.Integer),
    sa.column("user_id", sa.Integer),
    sa.column("joined_at", sa.DateTime),
    sa.column("role", sa.String),
)
activity = sa.table(
    "generic_activity_log",
    sa.column("id", sa.Integer),
    sa.column("user_id", sa.Integer),
    sa.column("action", sa.String),
    sa.column("detail", sa.JSON),
)
users = sa.table("users", sa.column("id", sa.Integer))


def upgrade():
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("visibility", sa.String(16), nullable=False,
                                   server_default="direct"))
        batch.add_column(sa.Column("description", sa.String(500), nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("archived", sa.Boolean, nullable=False, server_default="0"))
        batch.add_column(sa.Column("created_by_id", sa.Integer, nullable=True))
        batch.create_foreign_key("fk_conversations_created_by", "users", ["created_by_id"],
                                 ["id"], ondelete="SET NULL")
        batch.create_check_constraint("ck_conversations_visibility",
                                      "visibility IN ('direct', 'private', 'public')")
        batch.create_index("ix_conversations_visibility_archived", ["visibility", "archived"])
    with op.batch_alter_table("participants") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=False,
                                   server_default="member"))
        batch.create_check_constraint("ck_participants_role",
                                      "role IN ('owner', 'admin', 'member')")
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("deleted_by", sa.Integer, nullable=True))

    bind = op.get_bind()
    bind.execute(conversations.update().where(conversations.c.is_group == sa.true())
                 .values(visibility="private"))
    _owners(bind)


def _owners(bind) -> None:
    """Each conversation's creator (the first ``conversation_created`` of it in the activity
    log, if that user still exists) becomes its ``created_by_id``, and a group's creator, while
    still a member, its owner;
    a group whose creator is unknown or gone gets its earliest member as owner."""
    existing = set(bind.execute(sa.select(users.c.id)).scalars())
    creators: dict[int, int] = {}
    rows = bind.execute(sa.select(activity.c.user_id, activity.c.detail)
                        .where(activity.c.action == "conversation_created")
                        .order_by(activity.c.id))
    for user_id, detail in rows:
        conversation_id = detail.get("conversation_id") if isinstance(detail, dict) else None
        if (isinstance(conversation_id, int) and user_id in existing
                and conversation_id not in creators):
            creators[conversation_id] = user_id
    members: dict[int, list[tuple[int, int]]] = {}
    rows = bind.execute(
        sa.select(participants.c.conversation_id, participants.c.id, participants.c.user_id)
        .select_from(participants.join(conversations,
                                       conversations.c.id == participants.c.conversation_id))
        .where(conversations.c.is_group == sa.true())
        .order_by(participants.c.conversation_id, participants.c.joined_at, participants.c.id))
    for conversation_id, participant_id, user_id in rows:
        members.setdefault(conversation_id, []).append((participant_id, user_id))
    known = set(bind.execute(sa.select(conversations.c.id)).scalars())
    for conversation_id in known & creators.keys():
        bind.execute(conversations.update().where(conversations.c.id == conversation_id)
                     .values(created_by_id=creators[conversation_id]))
    for conversation_id, rows in members.items():
        creator = creators.get(conversation_id)
        owner = next((pid for pid, uid in rows if uid == creator), rows[0][0])
        bind.execute(participants.update().where(participants.c.id == owner)
                     .values(role="owner"))


def downgrade():
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("deleted_by")
    with op.batch_alter_table("participants") as batch:
        batch.drop_constraint("ck_participants_role", type_="check")
        batch.drop_column("role")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_index("ix_conversations_visibility_archived")
        batch.drop_constraint("ck_conversations_visibility", type_="check")
        batch.drop_constraint("fk_conversations_created_by", type_="foreignkey")
        for column in ("created_by_id", "archived", "description", "visibility"):
            batch.drop_column(column)
