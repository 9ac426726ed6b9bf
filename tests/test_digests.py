"""The missed-message digest against a real SMTP server: direct messages and mentions sent
through the real send path, one mail per user per window holding every waiting conversation,
each message mailed once, nothing while online, read, muted, held by do-not-disturb or with mail
turned off, and the one-click unsubscribe of RFC 8058 (and its page)."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, update

from simplechat.digests.sweep import send_digest, sweep_digests
from simplechat.digests.unsubscribe import unsubscribe_token
from simplechat.extensions import db, mail
from simplechat.models import MissedMessage, Participant, User, utcnow
from tests.conftest import app_in_context
from tests.mailbox import SITE_URL, links, mailbox_fixture, parts  # noqa: F401  (a fixture)


@pytest.fixture
def app(database_uri, redis_url, mailbox):
    mailbox.clear()
    yield from app_in_context(database_uri, redis_url, CHAT_RATE_LIMIT="off", **mailbox.settings())


def send(sio, conversation_id: int, text: str) -> dict:
    answer = sio.emit("send_message", {"conversation_id": conversation_id, "message": text},
                      namespace="/chat", callback=True)
    assert answer["ok"] is True, answer
    return answer["message"]


def waiting_rows(user_id: int) -> list[MissedMessage]:
    db.session.expire_all()
    return list(db.session.scalars(select(MissedMessage).where(MissedMessage.user_id == user_id)
                                   .order_by(MissedMessage.id)))


def time_passes(minutes: int = 11) -> None:
    """The waiting messages were sent ``minutes`` ago (the delay is 10 minutes by default)."""
    db.session.execute(update(MissedMessage).values(
        created_at=utcnow() - timedelta(minutes=minutes)))
    db.session.commit()


def set_level(user: User, conversation_id: int, **values) -> None:
    db.session.execute(update(Participant).where(Participant.user_id == user.id,
                                                 Participant.conversation_id == conversation_id)
                       .values(**values))
    db.session.commit()


def set_user(user: User, **values) -> None:
    db.session.execute(update(User).where(User.id == user.id).values(**values))
    db.session.commit()


@pytest.fixture
def people(make_user, socket_client):
    """Ada (offline, takes mail) and three people with open sockets."""
    ada = make_user("ada", first_name="Ada", last_name="Lovelace")
    others = {name: make_user(name, first_name=name.title(), last_name="X")
              for name in ("bob", "cat", "dan")}
    sockets = {name: socket_client(user) for name, user in others.items()}
    return ada, others, sockets


# --- batching ---

def test_one_mail_holds_every_waiting_conversation_and_each_message_once(
        app, people, make_conversation, mailbox):
    ada, others, sockets = people
    with_bob = make_conversation(others["bob"], ada)
    with_cat = make_conversation(others["cat"], ada)
    group = make_conversation(others["dan"], ada, others["bob"], title="Launch <team>")
    send(sockets["bob"], with_bob.id, "first from bob")
    send(sockets["bob"], with_bob.id, "<script>alert(1)</script> & more")
    send(sockets["cat"], with_cat.id, "hello from cat")
    send(sockets["dan"], group.id, "plain group talk, nothing for ada")
    send(sockets["dan"], group.id, "@ada please look at the launch")
    assert len(waiting_rows(ada.id)) == 4  # three direct messages and one mention

    assert sweep_digests.run() == 0  # not yet: the oldest is younger than her delay
    time_passes()
    assert sweep_digests.run() == 1
    [digest] = mailbox.wait_for(1, to="ada@example.com")
    assert digest["To"] == "ada@example.com"
    assert digest["Subject"] == "Simple Chat: 4 unread messages in 3 conversations"
    assert digest["Auto-Submitted"] == "auto-generated"
    text, html = parts(digest)
    for conversation in (with_bob, with_cat, group):
        link = f"{SITE_URL}/chat/{conversation.id}"
        assert link in links(text) and f'href="{link}"' in html
    for line in ("first from bob", "hello from cat", "@ada please look at the launch",
                 "<script>alert(1)</script> & more"):
        assert line in text
    assert "nothing for ada" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html and "<script>" not in html
    assert "Launch &lt;team&gt;" in html and "Launch <team>" in text
    assert "Bob X" in text and "Cat X" in text and "Dan X" in text
    assert f"{SITE_URL}/chat/settings/notifications" in links(text)  # change the delay there

    # Mailed once: the next sweeps find nothing, until a new message waits its own delay.
    assert sweep_digests.run() == 0
    send(sockets["cat"], with_cat.id, "one more from cat")
    assert sweep_digests.run() == 0
    time_passes()
    assert sweep_digests.run() == 1
    second = mailbox.wait_for(2, to="ada@example.com")[1]
    text, _ = parts(second)
    assert "one more from cat" in text and "first from bob" not in text
    assert second["Subject"] == "Simple Chat: 1 unread message in Cat X"
    assert len(mailbox.mails()) == 2


def test_the_window_opens_with_the_first_due_message_and_takes_the_younger_ones(
        app, people, make_conversation, mailbox):
    ada, others, sockets = people
    with_bob, with_cat = (make_conversation(others[n], ada) for n in ("bob", "cat"))
    send(sockets["bob"], with_bob.id, "older")
    time_passes(11)
    send(sockets["cat"], with_cat.id, "just now")  # younger than the delay
    assert sweep_digests.run() == 1
    text, _ = parts(mailbox.wait_for(1)[0])
    assert "older" in text and "just now" in text
    assert all(row.mailed_at is not None for row in waiting_rows(ada.id))


def test_a_users_own_delay_decides_when_the_digest_is_due(
        app, people, make_conversation, mailbox):
    ada, others, sockets = people
    set_user(ada, email_delay_minutes=60)
    conversation = make_conversation(others["bob"], ada)
    send(sockets["bob"], conversation.id, "in an hour")
    time_passes(30)
    assert sweep_digests.run() == 0
    time_passes(61)
    assert sweep_digests.run() == 1
    mailbox.wait_for(1, to="ada@example.com")


# --- what is not mailed ---

def test_nothing_is_mailed_while_a_socket_of_the_user_is_online(
        app, people, make_conversation, socket_client, mailbox):
    ada, others, sockets = people
    conversation = make_conversation(others["bob"], ada)
    ada_socket = socket_client(ada)
    send(sockets["bob"], conversation.id, "are you there?")
    time_passes()
    assert sweep_digests.run() == 1
    assert send_digest.run(ada.id) == "online"
    assert [r.mailed_at for r in waiting_rows(ada.id)] == [None]  # kept for when she goes
    ada_socket.disconnect("/chat")
    assert send_digest.run(ada.id) == "sent"
    assert "are you there?" in parts(mailbox.wait_for(1)[0])[0]


def test_a_message_read_before_the_sweep_is_not_mailed(
        app, people, make_conversation, socket_client, mailbox):
    ada, others, sockets = people
    with_bob, with_cat = (make_conversation(others[n], ada) for n in ("bob", "cat"))
    read_one = send(sockets["bob"], with_bob.id, "read on the phone")
    send(sockets["cat"], with_cat.id, "still unread")
    ada_socket = socket_client(ada)
    assert ada_socket.emit("read", {"conversation_id": with_bob.id, "message_id": read_one["id"]},
                           namespace="/chat", callback=True)["ok"] is True
    ada_socket.disconnect("/chat")
    time_passes()
    assert sweep_digests.run() == 1
    text, _ = parts(mailbox.wait_for(1)[0])
    assert "still unread" in text and "read on the phone" not in text
    assert len(waiting_rows(ada.id)) == 1  # the read one was dropped


@pytest.mark.parametrize("level", ["none", "muted for a time", "mentions"])
def test_a_muted_conversation_or_one_at_level_none_or_mentions_is_not_mailed(
        app, people, make_conversation, mailbox, level):
    ada, others, sockets = people
    quiet, loud = (make_conversation(others[n], ada) for n in ("bob", "cat"))
    values = {"none": {"notification_level": "none"},
              "muted for a time": {"muted_until": utcnow() + timedelta(hours=8)},
              "mentions": {"notification_level": "mentions"}}[level]
    set_level(ada, quiet.id, **values)
    send(sockets["bob"], quiet.id, "not for mail")
    send(sockets["cat"], loud.id, "for mail")
    time_passes()
    assert sweep_digests.run() == 1
    text, _ = parts(mailbox.wait_for(1)[0])
    assert "for mail" in text and "not for mail" not in text


def test_a_mute_that_has_ended_mails_again(app, people, make_conversation, mailbox):
    ada, others, sockets = people
    conversation = make_conversation(others["bob"], ada)
    set_level(ada, conversation.id, muted_until=utcnow() - timedelta(minutes=1))
    send(sockets["bob"], conversation.id, "mute is over")
    time_passes()
    assert sweep_digests.run() == 1
    assert "mute is over" in parts(mailbox.wait_for(1)[0])[0]


def test_a_public_channel_mails_mentions_only(app, people, mailbox):
    from simplechat.conversations.channels import create_channel

    ada, others, sockets = people
    channel, refusal = create_channel(others["dan"], "town-square", "", "public",
                                      members=[ada])
    assert refusal is None
    channel_id = channel.id
    send(sockets["dan"], channel_id, "general chatter")
    send(sockets["dan"], channel_id, "@ada your turn")
    assert [r.mentioned for r in waiting_rows(ada.id)] == [True]
    time_passes()
    assert sweep_digests.run() == 1
    text, _ = parts(mailbox.wait_for(1)[0])
    assert "@ada your turn" in text and "general chatter" not in text


def test_with_mail_turned_off_nothing_waits_and_nothing_is_mailed(
        app, people, make_conversation, mailbox):
    ada, others, sockets = people
    conversation = make_conversation(others["bob"], ada)
    send(sockets["bob"], conversation.id, "noted for the digest")
    set_user(ada, email_notifications=False)
    send(sockets["bob"], conversation.id, "not even noted")
    assert len(waiting_rows(ada.id)) == 1
    time_passes()
    assert sweep_digests.run() == 1
    assert send_digest.run(ada.id) == "off"  # what waited is dropped
    assert waiting_rows(ada.id) == []
    assert mailbox.mails() == []


def test_do_not_disturb_holds_the_digest_until_it_ends(app, people, make_conversation, mailbox):
    ada, others, sockets = people
    conversation = make_conversation(others["bob"], ada)
    set_user(ada, dnd_until=utcnow() + timedelta(hours=1))
    send(sockets["bob"], conversation.id, "after the meeting")
    time_passes()
    assert send_digest.run(ada.id) == "waiting"
    assert len(waiting_rows(ada.id)) == 1 and mailbox.mails() == []
    set_user(ada, dnd_until=utcnow() - timedelta(minutes=1))
    assert send_digest.run(ada.id) == "sent"
    assert "after the meeting" in parts(mailbox.wait_for(1)[0])[0]


def test_quiet_hours_hold_the_digest(app, people, make_conversation, mailbox):
    ada, others, sockets = people
    conversation = make_conversation(others["bob"], ada)
    now = utcnow()
    start, end = (now - timedelta(hours=1)).strftime("%H:%M"), (now + timedelta(hours=1))
    set_user(ada, quiet_hours_start=start, quiet_hours_end=end.strftime("%H:%M"),
             quiet_hours_timezone="UTC")
    send(sockets["bob"], conversation.id, "in the quiet")
    time_passes()
    assert send_digest.run(ada.id) == "waiting" and mailbox.mails() == []
    set_user(ada, quiet_hours_start=None, quiet_hours_end=None, quiet_hours_timezone=None)
    assert send_digest.run(ada.id) == "sent"


def test_a_deleted_message_or_a_left_conversation_is_not_mailed(
        app, people, make_conversation, mailbox):
    ada, others, sockets = people
    with_bob = make_conversation(others["bob"], ada)
    group = make_conversation(others["dan"], ada, others["cat"], title="Ops")
    gone = send(sockets["bob"], with_bob.id, "oops, wrong person")
    send(sockets["dan"], group.id, "@ada before you left")
    assert sockets["bob"].emit("delete_message", {"conversation_id": with_bob.id,
                                                  "message_id": gone["id"]},
                               namespace="/chat", callback=True)["ok"] is True
    db.session.execute(Participant.__table__.delete().where(
        Participant.user_id == ada.id, Participant.conversation_id == group.id))
    db.session.commit()
    time_passes()
    sweep_digests.run()
    assert send_digest.run(ada.id) == "waiting"
    assert waiting_rows(ada.id) == [] and mailbox.mails() == []


def test_a_refused_mail_gives_its_messages_back_for_the_next_sweep(
        app, people, make_conversation, mailbox):
    ada, others, sockets = people
    conversation = make_conversation(others["bob"], ada)
    send(sockets["bob"], conversation.id, "second time lucky")
    time_passes()
    state = app.extensions["mailman"]
    port, state.port = state.port, _closed_port()
    try:
        with pytest.raises(OSError):
            send_digest.run(ada.id)
    finally:
        state.port = port
    assert [r.mailed_at for r in waiting_rows(ada.id)] == [None]
    assert sweep_digests.run() == 1
    assert len(mailbox.wait_for(1)) == 1
    assert all(r.mailed_at is not None for r in waiting_rows(ada.id))


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends


def test_a_failure_to_note_a_message_never_loses_the_message(
        app, people, make_conversation, monkeypatch):
    """The INSERT fails in the database (no such table): the batch's savepoint takes it back,
    and the message is stored all the same."""
    from sqlalchemy import text

    from simplechat.digests import missed
    from simplechat.models import Message

    ada, others, sockets = people
    conversation = make_conversation(others["bob"], ada)
    monkeypatch.setattr(missed, "insert_ignoring_duplicates",
                        lambda *a, **k: text("INSERT INTO no_such_table VALUES (1)"))
    sent = send(sockets["bob"], conversation.id, "stored whatever happens")
    db.session.expire_all()
    assert db.session.get(Message, sent["id"]).text == "stored whatever happens"
    assert waiting_rows(ada.id) == []


def test_without_mail_nothing_is_noted_or_swept(database_uri, redis_url):
    for app in app_in_context(database_uri, redis_url, MAIL_SERVER=None):
        ada = User(username="ada", first_name="A", last_name="L", email="ada@example.com",
                   password_hash="x")
        bob = User(username="bob", first_name="B", last_name="L", email="bob@example.com",
                   password_hash="x")
        db.session.add_all([ada, bob])
        db.session.commit()
        from simplechat.conversations.records import start_conversation
        from simplechat.messaging.send import send_message

        conversation, _ = start_conversation(bob, [ada], None)
        with app.test_request_context():
            assert send_message(bob, conversation.id, "hi")["ok"] is True
        assert waiting_rows(ada.id) == [] and sweep_digests.run() == 0


def test_the_sweep_runs_every_minute_under_celery_beat_and_mail_goes_out_apart(app):
    conf = app.extensions["celery"].conf
    schedule = conf.beat_schedule["simplechat.sweep_digests"]
    assert schedule == {"task": "simplechat.sweep_digests", "schedule": 60.0}
    # Waiting on an SMTP server never holds up the storing of messages.
    outgoing = conf.task_queues[1].name
    assert outgoing == f"{conf.task_default_queue}-webhooks"
    for name in ("simplechat.send_digest", "simplechat.send_password_reset"):
        assert conf.task_routes[name] == {"queue": outgoing}
    assert "simplechat.sweep_digests" not in conf.task_routes


# --- unsubscribe ---

def _digest_for_ada(people, make_conversation, mailbox):
    ada, others, sockets = people
    conversation = make_conversation(others["bob"], ada)
    send(sockets["bob"], conversation.id, "unsubscribe me")
    time_passes()
    sweep_digests.run()
    return mailbox.wait_for(1, to="ada@example.com")[0]


def test_the_digest_carries_a_one_click_unsubscribe(app, people, make_conversation, mailbox):
    ada = people[0]
    digest = _digest_for_ada(people, make_conversation, mailbox)
    header = digest["List-Unsubscribe"].strip()  # folded onto its own line when long
    assert re.fullmatch(rf"<{re.escape(SITE_URL)}/mail/unsubscribe/[A-Za-z0-9_.-]+>", header)
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = header[1:-1]
    text, html = parts(digest)
    assert link in text and f'href="{link}"' in html

    app.config["WTF_CSRF_ENABLED"] = True
    try:
        # A mail provider's POST: no cookie, no CSRF token, only the RFC 8058 body.
        provider = app.test_client()
        response = provider.post(urlsplit(link).path, data="List-Unsubscribe=One-Click",
                                 content_type="application/x-www-form-urlencoded")
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert response.status_code == 200 and response.get_json() == {"ok": True}
    db.session.expire_all()
    assert db.session.get(User, ada.id).email_notifications is False
    # Multipart works too, and a second click changes nothing.
    again = app.test_client().post(urlsplit(link).path,
                                   data={"List-Unsubscribe": "One-Click"},
                                   content_type="multipart/form-data")
    assert again.status_code == 200


def test_the_unsubscribe_page_asks_and_its_form_needs_the_csrf_token(app, people):
    ada = people[0]
    path = f"/mail/unsubscribe/{unsubscribe_token(ada)}"
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        http = app.test_client()
        page = http.get(path)
        assert page.status_code == 200
        body = page.get_data(as_text=True)
        assert 'id="unsubscribe-button"' in body and "ada" in body
        assert http.post(path, data={}).status_code == 400  # no token
        assert http.post(path, data={"csrf_token": "forged"}).status_code == 400
        db.session.expire_all()
        assert db.session.get(User, ada.id).email_notifications is True
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', body).group(1)
        done = http.post(path, data={"csrf_token": token})
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert done.status_code == 200 and 'id="unsubscribed"' in done.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, ada.id).email_notifications is False
    assert 'id="already-unsubscribed"' in http.get(path).get_data(as_text=True)


def test_unsubscribing_drops_what_waited(app, people, make_conversation):
    ada, others, sockets = people
    conversation = make_conversation(others["bob"], ada)
    send(sockets["bob"], conversation.id, "will never be mailed")
    path = f"/mail/unsubscribe/{unsubscribe_token(ada)}"
    assert app.test_client().post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert waiting_rows(ada.id) == []


def _bad_tokens(app, ada) -> list[str]:
    from itsdangerous import URLSafeSerializer

    from simplechat.digests.unsubscribe import SALT

    good = unsubscribe_token(ada)
    signed = URLSafeSerializer(app.config["SECRET_KEY"], salt=SALT)
    return [good[:-2] + ("AA" if good[-2:] != "AA" else "BB"),
            URLSafeSerializer("other secret", salt=SALT).dumps([ada.id]),
            URLSafeSerializer(app.config["SECRET_KEY"], salt="other").dumps([ada.id]),
            signed.dumps({"id": ada.id}), signed.dumps([str(ada.id)]), signed.dumps([True]),
            signed.dumps([ada.id, 1]), signed.dumps([ada.id + 1000]), "garbage", "x" * 300]


def test_a_bad_unsubscribe_token_is_refused_and_changes_nothing(app, make_user):
    ada = make_user("ada")
    http = app.test_client()
    for token in _bad_tokens(app, ada):
        path = f"/mail/unsubscribe/{token}"
        page = http.get(path)
        assert page.status_code == 400, token
        assert 'id="unsubscribe-invalid"' in page.get_data(as_text=True)
        one_click = http.post(path, data={"List-Unsubscribe": "One-Click"})
        assert one_click.status_code == 400 and one_click.get_json() == {
            "ok": False, "error": "invalid"}
        assert http.post(path, data={}).status_code == 400
    db.session.expire_all()
    assert db.session.get(User, ada.id).email_notifications is True


def test_the_unsubscribe_route_takes_only_get_and_post(app, make_user):
    path = f"/mail/unsubscribe/{unsubscribe_token(make_user('ada'))}"
    assert app.test_client().put(path).status_code == 405
    assert app.test_client().delete(path).status_code == 405


def test_the_mail_extension_is_bound(app):
    assert mail.get_connection().host == "127.0.0.1"
