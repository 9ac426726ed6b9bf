"""A change of who takes part fills the membership cache again at once (infra/membership.py:
``refill``): the members' next events read no SQL for it, and a refill that a later change
overtook writes nothing. On Redis (the embedded default has no round trips to save)."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from simplechat.conversations.groups import leave_conversation
from simplechat.conversations.records import start_conversation
from simplechat.extensions import db
from simplechat.infra import membership as membership_module
from simplechat.infra.membership import FILLED, membership
from tests.conftest import app_in_context


@pytest.fixture
def app(database_uri, redis_url):
    if not redis_url:
        pytest.skip("TEST_REDIS_URL not set")
    yield from app_in_context(database_uri, redis_url, CHAT_CONVERSATION_RATE_LIMIT="off",
                              CHAT_PRESENCE_PUSH_MAX_MEMBERS=3)


@pytest.fixture
def people(make_user):
    return [make_user(f"refill{n}") for n in range(5)]


def _hash(app, key: str) -> dict[str, str]:
    raw = app.extensions["simplechat"].redis.hgetall(key)
    return {k.decode(): v.decode() for k, v in raw.items()}


class Statements:
    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, _conn, _cursor, statement, *_args):
        self.seen.append(statement)


@pytest.fixture
def statements(app):
    counter = Statements()
    event.listen(db.engine, "before_cursor_execute", counter)
    yield counter
    event.remove(db.engine, "before_cursor_execute", counter)


def test_a_group_just_started_is_cached_for_every_member_and_read_with_no_sql(app, people,
                                                                               statements):
    ada, bob, cy = people[:3]
    conversation, _ = start_conversation(ada, [bob, cy], "Three")
    cache = membership()
    for user in (ada, bob, cy):
        assert _hash(app, cache.conversations_key(user.id)) == {
            FILLED: "", str(conversation.id): ""}
    members = _hash(app, cache.members_key(conversation.id))
    assert members == {FILLED: "", str(ada.id): "", str(bob.id): "", str(cy.id): ""}
    db.session.remove()
    statements.seen.clear()
    for user in (ada, bob, cy):  # what a connect and a join read
        assert cache.presence_audience(user.id) == ([conversation.id], set())
        view = cache.listed_markers_view(conversation.id, user.id)
        assert view == ({ada.id: None, bob.id: None, cy.id: None}, 3)
    assert statements.seen == []


def test_direct_peers_and_big_groups_are_written_as_a_fill_writes_them(app, people):
    ada, bob, cy, dee, eve = people
    direct, _ = start_conversation(ada, [bob], None)
    big, _ = start_conversation(ada, [bob, cy, dee], "Four")  # past CHAT_PRESENCE_PUSH_MAX
    cache = membership()
    refilled = _hash(app, cache.conversations_key(ada.id))
    app.extensions["simplechat"].redis.delete(cache.conversations_key(ada.id))
    assert cache.direct_peers(ada.id) == {direct.id: bob.id, big.id: None}  # filled lazily
    assert _hash(app, cache.conversations_key(ada.id)) == refilled
    assert refilled[str(big.id)] == membership_module.BIG
    assert refilled[str(direct.id)] == str(bob.id)


def test_a_leaver_is_out_of_both_copies_at_once(app, people):
    ada, bob, cy = people[:3]
    conversation, _ = start_conversation(ada, [bob, cy], "Three")
    assert leave_conversation(cy, {"conversation_id": conversation.id})["ok"]
    cache = membership()
    assert str(conversation.id) not in _hash(app, cache.conversations_key(cy.id))
    assert str(cy.id) not in _hash(app, cache.members_key(conversation.id))
    assert cache.listed_markers_view(conversation.id, cy.id) is None


def test_a_refill_overtaken_by_a_later_change_writes_nothing(app, people, monkeypatch):
    ada, bob, cy = people[:3]
    conversation, _ = start_conversation(ada, [bob], None)
    cache = membership()
    real = membership_module._lists_from_sql

    def overtaken(user_ids, push_max):
        lists = real(user_ids, push_max)
        cache.changed([conversation.id], user_ids)  # another process's change, meanwhile
        return lists

    monkeypatch.setattr(membership_module, "_lists_from_sql", overtaken)
    cache.refill([conversation.id], [ada.id, bob.id])
    redis = app.extensions["simplechat"].redis
    assert not redis.exists(cache.conversations_key(ada.id))
    assert not redis.exists(cache.conversations_key(bob.id))
    assert not redis.exists(cache.members_key(conversation.id))


def test_a_conversation_or_a_crowd_past_the_bound_fills_on_its_next_read(app, people,
                                                                          monkeypatch):
    monkeypatch.setattr(membership_module, "REFILL_MAX_MEMBERS", 3)
    ada, bob, cy, dee, eve = people
    cache = membership()
    redis = app.extensions["simplechat"].redis
    four, _ = start_conversation(ada, [bob, cy, dee], "Four")  # four users: past the bound
    assert not redis.exists(cache.members_key(four.id))
    assert not any(redis.exists(cache.conversations_key(u.id)) for u in (ada, bob, cy, dee))
    three, _ = start_conversation(eve, [bob, cy], "Three")  # at the bound: filled
    assert redis.exists(cache.members_key(three.id))
    assert all(redis.exists(cache.conversations_key(u.id)) for u in (eve, bob, cy))
    assert cache.conversations(bob.id) == sorted([four.id, three.id])
    assert sorted(cache.members(four.id)) == sorted(u.id for u in (ada, bob, cy, dee))


def test_a_refill_that_fails_leaves_the_change_done_and_the_next_read_fills(app, people,
                                                                           monkeypatch):
    ada, bob = people[:2]

    def broken(*_args):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(membership_module, "_lists_from_sql", broken)
    conversation, _ = start_conversation(ada, [bob], None)
    monkeypatch.undo()
    redis = app.extensions["simplechat"].redis
    assert not redis.exists(membership().conversations_key(ada.id))
    assert membership().conversations(ada.id) == [conversation.id]
