"""Reads by key that arrive together are one query (simplechat/auth/batched.py), and a token's
identity confirmed in SQL at connect goes through them."""

from __future__ import annotations

import threading
import time

import pytest

from simplechat.auth.batched import BatchedReads
from simplechat.auth.tokens import (
    _identity_reads,
    _live_identities,
    create_token,
    revoke_tokens,
    token_identity,
    token_store,
)
from simplechat.extensions import db


def ask_together(reads: BatchedReads, keys: list) -> dict:
    """Every key asked from a thread of its own, all at about the same time."""
    answers: dict = {}
    start = threading.Barrier(len(keys))

    def ask(key):
        start.wait()
        try:
            answers[key] = reads.get(key)
        except Exception as exc:  # noqa: BLE001 - what each caller saw is the test's subject
            answers[key] = exc

    threads = [threading.Thread(target=ask, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return answers


def test_keys_asked_together_are_read_in_one_query_and_each_caller_gets_its_own_answer():
    calls = []

    def read_many(keys):
        calls.append(sorted(keys))
        return {key: f"value {key}" for key in keys if key % 2 == 0}

    reads = BatchedReads(read_many, lambda: time.sleep(0.2))
    answers = ask_together(reads, list(range(6)))
    assert calls == [[0, 1, 2, 3, 4, 5]] and reads.reads == 1
    assert answers == {0: "value 0", 1: None, 2: "value 2", 3: None, 4: "value 4", 5: None}
    # A later caller gets a read of its own, never the earlier answer.
    assert reads.get(2) == "value 2" and calls[-1] == [2] and reads.reads == 2


def test_a_batch_closes_at_its_limit_and_the_next_callers_start_another():
    calls = []

    def read_many(keys):
        calls.append(len(keys))
        return {key: key for key in keys}

    reads = BatchedReads(read_many, lambda: time.sleep(0.3), limit=3)
    answers = ask_together(reads, list(range(7)))
    assert answers == {key: key for key in range(7)}
    assert sorted(calls) == [1, 3, 3]


def test_a_failed_read_reaches_every_caller_of_its_batch_and_the_next_read_is_made_afresh():
    failing = [True]

    def read_many(keys):
        if failing[0]:
            raise ConnectionError("the database is away")
        return {key: "back" for key in keys}

    reads = BatchedReads(read_many, lambda: time.sleep(0.2))
    answers = ask_together(reads, [1, 2, 3])
    assert all(isinstance(answer, ConnectionError) for answer in answers.values()), answers
    failing[0] = False
    assert reads.get(1) == "back"


def test_a_stopped_leader_s_waiters_get_an_error_of_their_own():
    class Stop(BaseException):
        pass

    entered = threading.Event()

    def pause():
        entered.set()
        time.sleep(0.2)
        raise Stop  # as a greenlet killed while it waits for its turn

    reads = BatchedReads(lambda keys: {key: key for key in keys}, pause)
    seen = {}

    def leader():
        try:
            reads.get(1)
        except Stop:
            seen["leader"] = "stopped"

    thread = threading.Thread(target=leader)
    thread.start()
    entered.wait(5)
    with pytest.raises(RuntimeError, match="was stopped"):
        reads.get(2)
    thread.join(5)
    assert seen == {"leader": "stopped"}


def test_live_identities_are_read_in_one_query_without_revoked_tokens_or_inactive_users(
        app, make_user):
    ada, bob, eve = make_user("ada"), make_user("bob"), make_user("eve")
    a, b, e = (create_token(user, "t").row for user in (ada, bob, eve))
    revoke_tokens([b])
    eve.is_active = False
    db.session.commit()
    found = _live_identities([a.id, b.id, e.id, 999_999])
    assert found == {a.id: {"user_id": ada.id, "username": "ada", "token": a.token_hash,
                            "name": ada.full_name}}


def test_a_token_identity_past_its_trust_is_confirmed_through_the_batched_reads(app, make_user):
    ada = make_user("ada")
    row = create_token(ada, "t").row
    reads = _identity_reads()
    before = reads.reads
    assert token_identity(row.id)["username"] == "ada"  # nothing cached: SQL, put back
    assert reads.reads == before + 1
    assert token_identity(row.id)["user_id"] == ada.id  # cached now: no read
    assert reads.reads == before + 1
    assert token_identity(row.id, look_first=False)["user_id"] == ada.id  # SQL again
    assert reads.reads == before + 2
    revoke_tokens([row])
    assert token_identity(row.id) is None
    assert token_store().get(row.id) is None
