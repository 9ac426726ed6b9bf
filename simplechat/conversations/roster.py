"""A conversation's members in one order everywhere (owners, admins, then the others by name):
a page at a time with their roles, and the first ones of many conversations at once for the
conversation list (a big channel's are too many for one answer)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import and_, case, or_, select, union_all

from simplechat.conversations.records import LISTED_MEMBERS
from simplechat.extensions import db
from simplechat.models import ADMIN, OWNER, Participant, User

DEFAULT_PAGE = LISTED_MEMBERS  # the first page is what a conversation payload lists
MAX_PAGE = 200
MAX_ID = 2**63 - 1  # ids are positive 64-bit integers
_RANKS = {OWNER: 0, ADMIN: 1}
_OTHERS = 2
ROLE_RANK = case(_RANKS, value=Participant.role, else_=_OTHERS)
# A cursor: the last member of the page before, as its role's rank, first and last names
# (UTF-8 in hex) and user id, joined by dots. Any string of the pattern is a cursor.
_NAME = r"(?:[0-9a-f]{2}){0,256}"
CURSOR_PATTERN = rf"^[0-2]\.{_NAME}\.{_NAME}\.[0-9]{{1,19}}$"
_CURSOR = re.compile(CURSOR_PATTERN)


@dataclass(frozen=True)
class MemberCursor:
    rank: int
    first_name: str
    last_name: str
    user_id: int

    def __str__(self) -> str:
        return ".".join((str(self.rank), self.first_name.encode().hex(),
                         self.last_name.encode().hex(), str(self.user_id)))


@dataclass
class Member:
    user: User
    role: str


@dataclass
class MembersPage:
    members: list[Member]
    next_before: str | None  # the cursor of the next page, None on the last one


def _name(hex_text: str) -> str:
    # A forged cursor may hold bytes that are no UTF-8, or a NUL no database takes in a
    # string: it is a bound all the same.
    return bytes.fromhex(hex_text).decode("utf-8", "replace").replace("\x00", "")


def parse_member_cursor(value: object) -> MemberCursor | None:
    """The member a ``before`` cursor stands for, or None if it is not a cursor (an id past
    the largest one is the largest one)."""
    if not isinstance(value, str) or not _CURSOR.fullmatch(value):
        return None
    rank, first, last, user_id = value.split(".")
    return MemberCursor(int(rank), _name(first), _name(last), min(int(user_id), MAX_ID))


_ORDER = (ROLE_RANK, User.first_name, User.last_name, User.id)


def _after(cursor: MemberCursor):
    """Members after the cursor in the order of ``_ORDER``."""
    return or_(
        ROLE_RANK > cursor.rank,
        and_(ROLE_RANK == cursor.rank, or_(
            User.first_name > cursor.first_name,
            and_(User.first_name == cursor.first_name, or_(
                User.last_name > cursor.last_name,
                and_(User.last_name == cursor.last_name, User.id > cursor.user_id)))))
    )


def members_page(conversation_id: int, limit: int = DEFAULT_PAGE,
                 before: MemberCursor | None = None) -> MembersPage:
    """A page of the conversation's members (owners, admins, then the others by name), after
    the cursor ``before``: one statement."""
    limit = min(max(limit, 1), MAX_PAGE)
    query = (
        select(User, Participant.role)
        .join(Participant, Participant.user_id == User.id)
        .where(Participant.conversation_id == conversation_id)
        .order_by(*_ORDER)
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(_after(before))
    rows = db.session.execute(query).all()
    next_before = None
    if len(rows) > limit:
        user, role = rows[limit - 1]
        next_before = str(MemberCursor(_RANKS.get(role, _OTHERS), user.first_name,
                                       user.last_name, user.id))
    return MembersPage([Member(user, role) for user, role in rows[:limit]], next_before)


def first_members(counts: dict[int, int]) -> dict[int, list[Member]]:
    """The first LISTED_MEMBERS members of each conversation (the first page of
    members_page), given its member count, in one statement: every member of the small ones,
    and for each bigger one its first members alone, never a whole big room in the answer."""
    small = [cid for cid, n in counts.items() if n <= LISTED_MEMBERS]
    big = [cid for cid, n in counts.items() if n > LISTED_MEMBERS]
    pairs = (select(Participant.conversation_id, Participant.user_id, Participant.role)
             .join(User, User.id == Participant.user_id))
    branches = [pairs.where(Participant.conversation_id.in_(small))] if small else []
    for cid in big:
        # A limited SELECT of its own inside the UNION (SQLite takes no LIMIT on a member).
        first = (pairs.where(Participant.conversation_id == cid)
                 .order_by(*_ORDER).limit(LISTED_MEMBERS).subquery())
        branches.append(select(first.c.conversation_id, first.c.user_id, first.c.role))
    members: dict[int, list[Member]] = {cid: [] for cid in counts}
    if not branches:
        return members
    listed = union_all(*branches).subquery()
    rank = case(_RANKS, value=listed.c.role, else_=_OTHERS)
    for cid, user, role in db.session.execute(
        select(listed.c.conversation_id, User, listed.c.role)
        .join(User, User.id == listed.c.user_id)
        .order_by(listed.c.conversation_id, rank, User.first_name, User.last_name, User.id)
    ):
        if len(members[cid]) < LISTED_MEMBERS:  # one who joined since the count was taken
            members[cid].append(Member(user, role))
    return members
