"""The ``flask --app wsgi`` administration commands, through Flask's CLI runner."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from simplechat.extensions import db
from simplechat.infra.commands import parse_age
from simplechat.infra.services import services
from simplechat.messaging.send import send_message
from simplechat.models import (
    Conversation,
    GenericActivityLog,
    GenericErrorLog,
    Participant,
    User,
    utcnow,
)

NEW_PASSWORD = "another good password"


def invoke(runner, *args, input=None):
    result = runner.invoke(args=list(args), input=input)
    db.session.expire_all()  # the command ran in a session of its own
    return result


def failed(result, text: str) -> bool:
    return result.exit_code != 0 and text in result.output


def user_named(username: str) -> User | None:
    return db.session.scalar(select(User).where(User.username == username))


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


# --------------------------------------------------------------------------- users


def test_users_create_makes_a_user_who_can_log_in(runner, client):
    result = invoke(runner, "users", "create", "grace", "--email", "Grace@Example.com",
                    "--first-name", "Grace", "--last-name", "Hopper", "--password", "cobol rules!")
    assert result.exit_code == 0, result.output
    user = user_named("grace")
    assert user.email == "grace@example.com" and not user.is_admin and user.is_active
    response = client.post("/auth/login", data={"username": "grace", "password": "cobol rules!"})
    assert response.status_code == 302


def test_users_create_admin_flag_makes_an_administrator(runner):
    result = invoke(runner, "users", "create", "root1", "--email", "root1@example.com",
                    "--admin", "--password", "long enough pw")
    assert result.exit_code == 0, result.output
    assert "admin" in result.output
    assert user_named("root1").is_admin


def test_users_create_prompts_for_the_password_twice(runner):
    result = invoke(runner, "users", "create", "prompted", "--email", "p@example.com",
                    input="secret password\nsecret password\n")
    assert result.exit_code == 0, result.output
    assert user_named("prompted").check_password("secret password")


@pytest.mark.parametrize("args, message", [
    (["taken", "--email", "new@example.com"], "username 'taken' is taken"),
    (["TAKEN", "--email", "new@example.com"], "is taken"),
    (["fresh", "--email", "taken@example.com"], "e-mail 'taken@example.com' is taken"),
    (["fresh", "--email", "not-an-address"], "invalid e-mail"),
    (["a b", "--email", "new@example.com"], "a username has"),
    (["edit", "--email", "new@example.com"], "reserved"),
    (["fresh", "--email", "new@example.com", "--password", "short"], "the password must have 8 to"),
])
def test_users_create_refuses_bad_or_taken_values(runner, make_user, args, message):
    make_user("taken", email="taken@example.com")
    if "--password" not in args:
        args = [*args, "--password", "good password"]
    result = invoke(runner, "users", "create", *args)
    assert failed(result, message), result.output
    assert count(User) == 1


def test_users_create_without_email_is_a_usage_error(runner):
    result = invoke(runner, "users", "create", "nomail", "--password", "good password")
    assert result.exit_code == 2 and "--email" in result.output
    assert count(User) == 0


def test_users_list_shows_every_account_with_flags(runner, make_user):
    make_user("alice")
    make_user("boss", is_admin=True)
    make_user("gone", is_active=False)
    result = invoke(runner, "users", "list")
    assert result.exit_code == 0
    lines = {line.split()[1]: line for line in result.output.splitlines()[1:]}
    assert set(lines) == {"alice", "boss", "gone"}
    assert lines["alice"].endswith("-")
    assert lines["boss"].endswith("admin")
    assert lines["gone"].endswith("inactive")
    only_inactive = invoke(runner, "users", "list", "--inactive")
    assert [line.split()[1] for line in only_inactive.output.splitlines()[1:]] == ["gone"]


def test_users_list_with_no_users_says_so(runner):
    result = invoke(runner, "users", "list")
    assert result.exit_code == 0 and "no users" in result.output


def test_users_set_password_changes_the_password(runner, make_user):
    user = make_user("pwuser")
    result = invoke(runner, "users", "set-password", "PWUSER", "--password", NEW_PASSWORD)
    assert result.exit_code == 0, result.output
    user = user_named("pwuser")
    assert user.check_password(NEW_PASSWORD)
    assert not user.check_password("correct horse battery")


def test_users_set_password_errors(runner, make_user):
    make_user("pwuser")
    assert failed(invoke(runner, "users", "set-password", "nobody", "--password", NEW_PASSWORD),
                  "no user 'nobody'")
    assert failed(invoke(runner, "users", "set-password", "pwuser", "--password", "short"),
                  "the password must have")
    assert user_named("pwuser").check_password("correct horse battery")


def test_users_deactivate_closes_open_sockets_and_refuses_events(
    runner, make_user, make_conversation, socket_client
):
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    sio = socket_client(ada)
    assert sio.emit("join", {"conversation_id": conversation.id}, namespace="/chat",
                    callback=True)["ok"]
    result = invoke(runner, "users", "deactivate", "ada")
    assert result.exit_code == 0, result.output
    assert "1 open socket(s) closed" in result.output
    assert not user_named("ada").is_active
    assert not sio.is_connected("/chat")
    # Told why, before the server closed the socket.
    assert [e["args"] for e in sio.queue if e["name"] == "session_ended"] == [
        [{"reason": "deactivated"}]]
    assert "account_deactivated" in db.session.scalars(select(GenericActivityLog.action).where(
        GenericActivityLog.user_id == ada.id)).all()


def test_deactivated_user_cannot_log_in_until_activated(runner, make_user, client):
    make_user("carol")
    assert invoke(runner, "users", "deactivate", "carol").exit_code == 0
    login = {"username": "carol", "password": "correct horse battery"}
    assert client.post("/auth/login", data=login).status_code != 302
    again = invoke(runner, "users", "deactivate", "carol")
    assert again.exit_code == 0 and "already inactive" in again.output
    assert invoke(runner, "users", "activate", "carol").exit_code == 0
    assert user_named("carol").is_active
    assert client.post("/auth/login", data=login).status_code == 302
    already = invoke(runner, "users", "activate", "carol")
    assert already.exit_code == 0 and "already active" in already.output


def test_users_deactivate_and_activate_unknown_user_fail(runner):
    assert failed(invoke(runner, "users", "deactivate", "ghost"), "no user 'ghost'")
    assert failed(invoke(runner, "users", "activate", "ghost"), "no user 'ghost'")


# --------------------------------------------------------------------------- conversations


def test_conversations_create_group_with_title(runner, make_user):
    for name in ("ann", "ben", "cat"):
        make_user(name)
    result = invoke(runner, "conversations", "create", "--users", "ann, ben,cat",
                    "--title", "Planning")
    assert result.exit_code == 0, result.output
    conversation = db.session.scalar(select(Conversation))
    assert conversation.is_group and conversation.title == "Planning"
    members = set(db.session.scalars(
        select(User.username).join(Participant, Participant.user_id == User.id)))
    assert members == {"ann", "ben", "cat"}


def test_conversations_create_direct_is_reused(runner, make_user):
    make_user("ann"), make_user("ben")
    first = invoke(runner, "conversations", "create", "--users", "ann,ben")
    second = invoke(runner, "conversations", "create", "--users", "ben,ann")
    assert first.exit_code == second.exit_code == 0
    assert "created conversation" in first.output and "exists:" in second.output
    assert count(Conversation) == 1


@pytest.mark.parametrize("args, message", [
    (["--users", "ann"], "at least two different usernames"),
    (["--users", "ann,ANN"], "at least two different usernames"),
    (["--users", "ann,nobody"], "no user 'nobody'"),
    (["--users", "ann,ben", "--title", "Pair"], "--title is for group conversations"),
    (["--users", "ann,ben,cat", "--title", "   "], "a title has 1 to 120"),
    (["--users", "ann,ben,cat", "--title", "x" * 121], "a title has 1 to 120"),
    (["--users", "ann,gone"], "inactive account(s): gone"),
])
def test_conversations_create_refuses_bad_arguments(runner, make_user, args, message):
    for name in ("ann", "ben", "cat"):
        make_user(name)
    make_user("gone", is_active=False)
    result = invoke(runner, "conversations", "create", *args)
    assert failed(result, message), result.output
    assert count(Conversation) == 0 and count(Participant) == 0


def test_conversations_list_shows_participants_and_message_counts(
    runner, make_user, make_conversation, app
):
    ann, ben, cat = make_user("ann"), make_user("ben"), make_user("cat")
    direct = make_conversation(ann, ben)
    group = make_conversation(ann, ben, cat, title="Trio")
    assert send_message(ann, direct.id, "hello")["ok"]
    result = invoke(runner, "conversations", "list")
    assert result.exit_code == 0
    rows = {int(line.split()[0]): line for line in result.output.splitlines()[1:]}
    assert rows[direct.id].split()[1:3] == ["direct", "1"]
    assert rows[direct.id].endswith("ann, ben")
    assert rows[group.id].split()[1:3] == ["group", "0"]
    assert "Trio: ann, ben, cat" in rows[group.id]
    only_cat = invoke(runner, "conversations", "list", "--user", "cat")
    assert [int(line.split()[0]) for line in only_cat.output.splitlines()[1:]] == [group.id]
    assert failed(invoke(runner, "conversations", "list", "--user", "nobody"), "no user")


def test_conversations_list_empty(runner):
    result = invoke(runner, "conversations", "list")
    assert result.exit_code == 0 and "no conversations" in result.output


# --------------------------------------------------------------------------- chat


@pytest.fixture
def no_rate_limit(app):
    app.config["CHAT_RATE_LIMIT"] = "1000/1s"
    from simplechat.infra.services import init_services

    init_services(app)


def test_chat_rebuild_cache_rewarms_flushed_lists(
    runner, app, make_user, make_conversation, redis_url, no_rate_limit
):
    if not redis_url:
        pytest.skip("needs TEST_REDIS_URL")
    ann, ben = make_user("ann"), make_user("ben")
    one, two = make_conversation(ann, ben), make_conversation(ann, ben, make_user("cat"))
    for conversation in (one, two):
        for n in range(3):
            assert send_message(ann, conversation.id, f"m{n}")["ok"]
    client = services().redis
    prefix = app.config["REDIS_KEY_PREFIX"]
    client.delete(*client.keys(prefix + "conv:*"))
    assert services().cache.recent(one.id) == ([], None)

    single = invoke(runner, "chat", "rebuild-cache", "--conversation", str(one.id))
    assert single.exit_code == 0, single.output
    messages, state = services().cache.recent(one.id)
    assert [m["message"] for m in messages] == ["m0", "m1", "m2"] and state == "all"
    assert services().cache.recent(two.id) == ([], None)

    every = invoke(runner, "chat", "rebuild-cache")
    assert every.exit_code == 0, every.output
    assert "re-warmed 2 conversation(s), 6 message(s) cached" in every.output
    assert [m["message"] for m in services().cache.recent(two.id)[0]] == ["m0", "m1", "m2"]


def test_chat_rebuild_cache_errors(runner, redis_url):
    if not redis_url:
        pytest.skip("needs TEST_REDIS_URL")
    assert failed(invoke(runner, "chat", "rebuild-cache", "--conversation", "999"),
                  "no conversation 999")
    bad = invoke(runner, "chat", "rebuild-cache", "--conversation", "0")
    assert bad.exit_code == 2 and "--conversation" in bad.output


def test_chat_rebuild_cache_refused_without_redis(database_uri):
    from conftest import make_app

    app = make_app(database_uri, None)
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["chat", "rebuild-cache"])
    assert result.exit_code == 1 and "no REDIS_URL" in result.output


def test_chat_stats_counts_everything(runner, make_user, make_conversation, socket_client,
                                      redis_url):
    ann, ben = make_user("ann"), make_user("ben", is_active=False)
    conversation = make_conversation(ann, ben)
    assert send_message(ann, conversation.id, "hello")["ok"]
    socket_client(ann)
    result = invoke(runner, "chat", "stats", "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["users"] == 2 and figures["active_users"] == 1
    assert figures["conversations"] == 1 and figures["messages"] == 1
    assert figures["sockets"] == (1 if redis_url else None)
    assert figures["queue_depth"] is None  # the test config runs tasks inline
    plain = invoke(runner, "chat", "stats")
    assert "messages       1" in plain.output and "queue_depth    n/a" in plain.output


def test_chat_stats_reads_the_celery_queue_depth(database_uri, redis_url):
    if not redis_url:
        pytest.skip("needs TEST_REDIS_URL")
    import redis as redis_lib
    from conftest import make_app

    queue = "simplechat-test-stats-queue"
    app = make_app(database_uri, redis_url, CELERY_TASK_ALWAYS_EAGER=False, CELERY_QUEUE=queue)
    client = redis_lib.Redis.from_url(redis_url)
    client.delete(queue)
    client.rpush(queue, "a", "b", "c")
    try:
        with app.app_context():
            result = app.test_cli_runner().invoke(args=["chat", "stats", "--json"])
    finally:
        client.delete(queue)
        client.close()
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["queue_depth"] == 3


# --------------------------------------------------------------------------- logs


def _log_rows(make_user):
    user = make_user("logger")
    now = utcnow()
    db.session.add_all([
        GenericActivityLog(action="login", user_id=user.id, created_at=now - timedelta(days=40)),
        GenericActivityLog(action="logout", user_id=user.id, detail={"k": 1},
                           created_at=now - timedelta(hours=2)),
        GenericActivityLog(action="login", user_id=None, created_at=now),
        GenericErrorLog(where="socket:join", error_type="KeyError", message="'x'\nmore",
                        created_at=now - timedelta(days=31)),
        GenericErrorLog(where="tasks.store_message", error_type="IntegrityError",
                        message="refused", user_id=user.id, created_at=now),
    ])
    db.session.commit()
    return user


def test_logs_tail_shows_newest_entries_oldest_first(runner, make_user):
    user = _log_rows(make_user)
    activity = invoke(runner, "logs", "tail", "--activity", "-n", "2")
    assert activity.exit_code == 0
    lines = activity.output.splitlines()
    assert len(lines) == 2
    assert f"user={user.id}  logout" in lines[0] and '{"k": 1}' in lines[0]
    assert "user=-  login" in lines[1]
    errors = invoke(runner, "logs", "tail", "--errors")
    assert errors.exit_code == 0
    lines = errors.output.splitlines()
    assert lines[0].endswith("socket:join  KeyError: 'x'")
    assert lines[1].endswith("tasks.store_message  IntegrityError: refused")


@pytest.mark.parametrize("args, message", [
    ([], "choose one of --activity or --errors"),
    (["--activity", "--errors"], "choose one of --activity or --errors"),
    (["--errors", "-n", "0"], "-n"),
    (["--errors", "-n", "many"], "-n"),
])
def test_logs_tail_refuses_bad_arguments(runner, args, message):
    result = invoke(runner, "logs", "tail", *args)
    assert result.exit_code == 2 and message in result.output


def test_logs_prune_deletes_only_older_entries(runner, make_user):
    _log_rows(make_user)
    result = invoke(runner, "logs", "prune", "--older-than", "30d")
    assert result.exit_code == 0, result.output
    assert "1 activity, 1 errors" in result.output
    assert sorted(db.session.scalars(select(GenericActivityLog.action))) == ["login", "logout"]
    assert list(db.session.scalars(select(GenericErrorLog.where))) == ["tasks.store_message"]
    hours = invoke(runner, "logs", "prune", "--older-than", "90m", "--no-errors")
    assert hours.exit_code == 0 and "1 activity" in hours.output and "errors" not in hours.output
    assert count(GenericActivityLog) == 1 and count(GenericErrorLog) == 1


@pytest.mark.parametrize("age", ["30", "0d", "-5d", "30x", "d", "1.5d", "", "30 days",
                                 "99999999d"])
def test_logs_prune_refuses_nonsense_ages(runner, make_user, age):
    _log_rows(make_user)
    result = invoke(runner, "logs", "prune", "--older-than", age)
    assert result.exit_code == 2 and "--older-than" in result.output
    assert count(GenericActivityLog) == 3 and count(GenericErrorLog) == 2


def test_logs_prune_needs_an_age_and_a_table(runner):
    assert invoke(runner, "logs", "prune").exit_code == 2
    both_off = invoke(runner, "logs", "prune", "--older-than", "1d", "--no-activity",
                      "--no-errors")
    assert both_off.exit_code == 2 and "nothing to prune" in both_off.output


def test_parse_age_units():
    assert parse_age("30d") == timedelta(days=30)
    assert parse_age("12H") == timedelta(hours=12)
    assert parse_age(" 90m ") == timedelta(minutes=90)
