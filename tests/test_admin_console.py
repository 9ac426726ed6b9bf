"""The admin console /admin/: 404 to anyone but a site admin, CSRF on every form, and each
action's effect with its GenericActivityLog row (the admin as actor), on Redis and on the
embedded default."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from conftest import app_in_context
from sqlalchemy import select

from simplechat.auth.tokens import create_token
from simplechat.conversations.channels import create_channel
from simplechat.extensions import db
from simplechat.models import (
    ADMIN,
    MEMBER,
    OWNER,
    ApiToken,
    Conversation,
    GenericActivityLog,
    GenericErrorLog,
    Participant,
    User,
    UserSession,
    Webhook,
    utcnow,
)
from simplechat.webhooks.hooks import create_incoming
from tests.mailbox import Mailbox, links, parts

NS = "/chat"
PAGES = ("/admin/", "/admin/users", "/admin/channels", "/admin/reports", "/admin/activity",
         "/admin/errors", "/admin/tokens", "/admin/webhooks")
# Every action, with a form that would do something if it were accepted.
ACTIONS = (("/admin/users", {"username": "newbie", "email": "newbie@example.com",
                             "password": "a long enough password"}),
           ("/admin/users/{target}/deactivate", {}),
           ("/admin/users/{target}/reactivate", {}),
           ("/admin/users/{target}/admin", {"admin": "1"}),
           ("/admin/users/{target}/sign-out", {}),
           ("/admin/users/{target}/reset", {}),
           ("/admin/channels/{channel}/archive", {"archived": "1"}),
           ("/admin/channels/{channel}/owner", {"username": "bob"}),
           ("/admin/reports/1/delete", {}),
           ("/admin/reports/1/dismiss", {}),
           ("/admin/tokens/{token}/revoke", {}),
           ("/admin/webhooks/{webhook}/delete", {}))


@pytest.fixture
def app(database_uri, backend):
    yield from app_in_context(database_uri, backend, CHAT_CHANGE_RATE_LIMIT="off",
                              CHAT_SOCKET_EVENT_RATE="off")


def login(app, user):
    http = app.test_client()
    response = http.post("/auth/login", data={"username": user.username,
                                              "password": "correct horse battery"})
    assert response.status_code == 302
    return http


@pytest.fixture
def site(app, make_user):
    """root (site admin), ada (owner of a channel with bob in it), bob, with a token of bob's
    and an incoming webhook of the channel."""
    root = make_user("root", is_admin=True)
    ada, bob = make_user("ada"), make_user("bob")
    channel, refusal = create_channel(ada, "Engines", "", "public", limited=False)
    assert refusal is None
    db.session.add(Participant(conversation_id=channel.id, user_id=bob.id, role=MEMBER))
    db.session.commit()
    token = create_token(bob, "bot").row
    hook = create_incoming(db.session.get(Conversation, channel.id), None).webhook
    ids = {"target": bob.id, "channel": channel.id, "token": token.id, "webhook": hook.id}
    return root, ada, bob, channel, ids


def activity(action: str) -> list[GenericActivityLog]:
    db.session.expire_all()
    return list(db.session.scalars(select(GenericActivityLog).where(
        GenericActivityLog.action == action).order_by(GenericActivityLog.id)))


def state(ids) -> tuple:
    db.session.expire_all()
    bob = db.session.get(User, ids["target"])
    channel = db.session.get(Conversation, ids["channel"])
    return (bob.is_active, bob.is_admin, channel.archived,
            db.session.get(ApiToken, ids["token"]).revoked_at,
            db.session.get(Webhook, ids["webhook"]) is not None,
            db.session.scalar(select(User.id).where(User.username == "newbie")),
            tuple(db.session.scalars(select(UserSession.ended_at).where(
                UserSession.user_id == ids["target"]))))


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_every_admin_page_and_form_is_404_to_anyone_but_a_site_admin(app, site, who):
    root, ada, bob, channel, ids = site
    login(app, bob)  # a live session that sign-out or deactivation would end
    http = app.test_client() if who == "anonymous" else login(app, ada)
    before = state(ids)
    for page in PAGES:
        response = http.get(page)
        assert response.status_code == 404, page
        assert b"Admin console" not in response.data
    for url, form in ACTIONS:
        assert http.post(url.format(**ids), data=form).status_code == 404, url
    assert state(ids) == before


def test_an_admin_that_was_deactivated_or_demoted_gets_404(app, site):
    root, ada, bob, channel, ids = site
    http = login(app, root)
    assert http.get("/admin/users").status_code == 200
    root.is_admin = False
    db.session.commit()
    assert http.get("/admin/users").status_code == 404


def test_every_admin_form_without_its_csrf_token_is_400_and_changes_nothing(app, site):
    root, ada, bob, channel, ids = site
    login(app, bob)
    app.config["WTF_CSRF_ENABLED"] = True
    http = login_with_csrf(app, root)
    before = state(ids)
    for url, form in ACTIONS:
        response = http.post(url.format(**ids), data=form)
        assert response.status_code == 400, url
        bad = http.post(url.format(**ids), data={**form, "csrf_token": "forged"})
        assert bad.status_code == 400, url
    assert state(ids) == before
    # With the token the page gives, the same form works.
    token = re.search(r'name="csrf_token" value="([^"]+)"',
                      http.get("/admin/users").get_data(as_text=True)).group(1)
    response = http.post(f"/admin/users/{bob.id}/deactivate", data={"csrf_token": token})
    assert response.status_code == 302
    assert state(ids)[0] is False


def login_with_csrf(app, user):
    http = app.test_client()
    page = http.get("/auth/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    assert http.post("/auth/login", data={"username": user.username, "csrf_token": token,
                                          "password": "correct horse battery"}
                     ).status_code == 302
    return http


def test_pages_list_what_they_hold(app, site):
    root, ada, bob, channel, ids = site
    http = login(app, root)
    for page in PAGES:
        assert http.get(page).status_code == 200, page
    users = http.get("/admin/users?q=BO").get_data(as_text=True)
    assert 'data-user="bob"' in users and 'data-user="ada"' not in users
    channels = http.get("/admin/channels").get_data(as_text=True)
    assert "Engines" in channels and ">ada<" in channels
    tokens = http.get("/admin/tokens?user=bob").get_data(as_text=True)
    assert f'data-token="{ids["token"]}"' in tokens
    assert f'data-webhook="{ids["webhook"]}"' in http.get("/admin/webhooks").get_data(
        as_text=True)


def test_creating_an_account(app, site):
    root, ada, bob, channel, ids = site
    http = login(app, root)
    response = http.post("/admin/users", data={
        "username": "newbie", "email": "Newbie@Example.com", "first_name": "New",
        "password": "a long enough password", "admin": "y"})
    assert response.status_code == 302
    newbie = db.session.scalar(select(User).where(User.username == "newbie"))
    assert newbie.email == "newbie@example.com" and newbie.is_admin and newbie.is_active
    assert newbie.check_password("a long enough password")
    [row] = activity("user_created")
    assert row.user_id == root.id and row.detail["user_id"] == newbie.id
    assert row.detail["by"] == "admin"
    # Taken, malformed or short: the form says why and nothing is made.
    for form in ({"username": "bob", "email": "x@example.com", "password": "long enough pw"},
                 {"username": "ok", "email": "bob@example.com", "password": "long enough pw"},
                 {"username": "bad name!", "email": "y@example.com", "password": "long enough"},
                 {"username": "short", "email": "z@example.com", "password": "short"},
                 {"username": "", "email": "", "password": ""}):
        response = http.post("/admin/users", data=form)
        assert response.status_code == 400, form
        assert b"form-errors" in response.data
    assert len(activity("user_created")) == 1


def test_deactivating_ends_sessions_and_sockets_then_reactivating(app, site, socket_client):
    root, ada, bob, channel, ids = site
    sio = socket_client(bob)
    assert sio.is_connected(NS)
    http = login(app, root)
    assert http.post(f"/admin/users/{bob.id}/deactivate").status_code == 302
    db.session.expire_all()
    assert not db.session.get(User, bob.id).is_active
    assert not sio.is_connected(NS)
    assert [p["args"][0]["reason"] for p in sio.queue
            if p["name"] == "session_ended"] == ["deactivated"]
    assert all(ended is not None for ended in state(ids)[-1])
    [row] = activity("account_deactivated")
    assert (row.user_id, row.detail) == (root.id, {"by": "admin", "user_id": bob.id})
    assert b"was inactive already" in http.post(f"/admin/users/{bob.id}/deactivate",
                                                follow_redirects=True).data
    # bob cannot log in; reactivated he can.
    assert app.test_client().post("/auth/login", data={
        "username": "bob", "password": "correct horse battery"}).status_code != 302
    assert http.post(f"/admin/users/{bob.id}/reactivate").status_code == 302
    assert login(app, bob)
    [row] = activity("account_activated")
    assert row.user_id == root.id and row.detail["user_id"] == bob.id
    # An admin does not deactivate themselves.
    http.post(f"/admin/users/{root.id}/deactivate")
    db.session.expire_all()
    assert db.session.get(User, root.id).is_active


def test_admin_rights_on_and_off(app, site):
    root, ada, bob, channel, ids = site
    http = login(app, root)
    http.post(f"/admin/users/{bob.id}/admin", data={"admin": "1"})
    db.session.expire_all()
    assert db.session.get(User, bob.id).is_admin
    assert login(app, bob).get("/admin/users").status_code == 200
    http.post(f"/admin/users/{bob.id}/admin", data={"admin": "0"})
    db.session.expire_all()
    assert not db.session.get(User, bob.id).is_admin
    http.post(f"/admin/users/{root.id}/admin", data={"admin": "0"})  # not one's own
    db.session.expire_all()
    assert db.session.get(User, root.id).is_admin
    assert [(r.user_id, r.detail["user_id"]) for r in activity("admin_granted")
            + activity("admin_revoked")] == [(root.id, bob.id), (root.id, bob.id)]


def test_sign_out_everywhere(app, site, socket_client):
    root, ada, bob, channel, ids = site
    sio = socket_client(bob)
    bob_http = login(app, bob)
    http = login(app, root)
    assert http.post(f"/admin/users/{bob.id}/sign-out").status_code == 302
    assert not sio.is_connected(NS)
    assert bob_http.get("/chat/").status_code == 302  # back to the login page
    db.session.expire_all()
    assert db.session.get(User, bob.id).is_active
    [row] = activity("sessions_signed_out")
    assert row.user_id == root.id and row.detail == {"by": "admin", "user_id": bob.id,
                                                     "count": 2}


def test_archiving_and_handing_a_channel_over(app, site):
    root, ada, bob, channel, ids = site
    http = login(app, root)
    http.post(f"/admin/channels/{channel.id}/archive", data={"archived": "1"})
    db.session.expire_all()
    assert db.session.get(Conversation, channel.id).archived
    [row] = activity("conversation_archived")
    assert row.user_id == root.id and row.detail == {"conversation_id": channel.id,
                                                     "by": "admin"}
    http.post(f"/admin/channels/{channel.id}/archive", data={"archived": "0"})
    db.session.expire_all()
    assert not db.session.get(Conversation, channel.id).archived
    # Only a member can own it.
    page = http.post(f"/admin/channels/{channel.id}/owner", data={"username": "root"},
                     follow_redirects=True)
    assert b"cannot own" in page.data
    http.post(f"/admin/channels/{channel.id}/owner", data={"username": "BOB"})
    roles = dict(db.session.execute(select(Participant.user_id, Participant.role).where(
        Participant.conversation_id == channel.id)).all())
    assert (roles[ada.id], roles[bob.id]) == (ADMIN, OWNER)
    [row] = activity("ownership_transferred")
    assert row.user_id == root.id and row.detail["user_id"] == bob.id
    assert row.detail["former_owners"] == [ada.id]
    for bad in ({"username": "nobody"}, {}, {"username": "x" * 500}):
        assert http.post(f"/admin/channels/{channel.id}/owner", data=bad).status_code == 302
    assert http.post("/admin/channels/999999/archive", data={"archived": "1"}).status_code == 302


def test_revoking_a_token_and_deleting_a_webhook(app, site):
    root, ada, bob, channel, ids = site
    http = login(app, root)
    assert http.get("/api/me", headers={"Authorization": "Bearer x"}).status_code == 401
    assert http.post(f"/admin/tokens/{ids['token']}/revoke").status_code == 302
    db.session.expire_all()
    assert db.session.get(ApiToken, ids["token"]).revoked_at is not None
    [row] = activity("token_revoked")
    assert row.user_id == root.id and row.detail["user_id"] == bob.id
    assert http.post(f"/admin/webhooks/{ids['webhook']}/delete").status_code == 302
    assert db.session.get(Webhook, ids["webhook"]) is None
    [row] = activity("webhook_deleted")
    assert row.user_id == root.id and row.detail["webhook_id"] == ids["webhook"]
    assert http.post(f"/admin/webhooks/{ids['webhook']}/delete").status_code == 404
    assert http.post("/admin/tokens/999999/revoke").status_code == 404


def test_the_logs_filter_by_user_action_and_date_and_page(app, site):
    root, ada, bob, channel, ids = site
    old = utcnow() - timedelta(days=10)
    for i in range(60):
        db.session.add(GenericActivityLog(user_id=ada.id, action="probe", detail={"i": i}))
    db.session.add(GenericActivityLog(user_id=bob.id, action="probe", created_at=old))
    db.session.add(GenericErrorLog(user_id=bob.id, where="test.where", error_type="Boom",
                                   message="it broke"))
    db.session.commit()
    http = login(app, root)

    def count(page: str) -> int:
        html = http.get(page).get_data(as_text=True)
        return int(re.search(r"<caption>(\d+) ", html).group(1))

    assert count("/admin/activity?user=ada&action=probe") == 60
    assert count("/admin/activity?user=BOB&action=probe") == 1
    day = old.strftime("%Y-%m-%d")
    assert count(f"/admin/activity?action=probe&since={day}&until={day}") == 1
    assert count(f"/admin/activity?action=probe&until={day}") == 1
    assert count("/admin/activity?action=probe&since=not-a-date") == 0
    first = http.get("/admin/activity?user=ada&action=probe").get_data(as_text=True)
    assert "Page 1 of 2" in first and "page=2" in first and "user=ada" in first
    second = http.get("/admin/activity?user=ada&action=probe&page=2").get_data(as_text=True)
    assert second.count("probe</td>") == 10
    assert count("/admin/errors?user=bob&action=test.where") == 1
    assert count("/admin/errors?user=ada") == 0
    assert http.get("/admin/activity?page=-3&user=" + "x" * 500).status_code == 200


def test_sending_a_password_reset(database_uri, redis_url, make_user_on):
    """The link /auth/reset mails, asked for by an admin: a real SMTP server gets it."""
    mailbox = Mailbox().start()
    try:
        for app in app_in_context(database_uri, redis_url, **mailbox.settings()):
            root = make_user_on(app, "root", is_admin=True)
            bob = make_user_on(app, "bob")
            bot = make_user_on(app, "robot", is_bot=True)
            http = login(app, root)
            assert http.post(f"/admin/users/{bob.id}/reset").status_code == 302
            [mail] = mailbox.wait_for(1, to="bob@example.com")
            text, _ = parts(mail)
            assert any("/auth/reset/" in link for link in links(text))
            [row] = activity("password_reset_sent")
            assert row.user_id == root.id and row.detail["user_id"] == bob.id
            page = http.post(f"/admin/users/{bot.id}/reset", follow_redirects=True)
            assert b"No reset sent" in page.data
            # Without mail settings the console says so and sends nothing.
            app.config["MAIL_SERVER"] = None
            page = http.post(f"/admin/users/{bob.id}/reset", follow_redirects=True)
            assert b"sends no mail" in page.data
            assert len(mailbox.mails(to="bob@example.com")) == 1
    finally:
        mailbox.stop()


@pytest.fixture
def make_user_on():
    def make(app, username: str, **fields) -> User:
        user = User(username=username, first_name=username, last_name="T",
                    email=f"{username}@example.com", **fields)
        user.set_password("correct horse battery")
        db.session.add(user)
        db.session.commit()
        return user

    return make


def test_the_command_line_does_the_same_and_records_it_as_its_own(app, site, runner):
    root, ada, bob, channel, ids = site
    result = runner.invoke(args=["users", "set-admin", "bob"])
    assert result.exit_code == 0 and "bob is an admin" in result.output
    result = runner.invoke(args=["users", "set-admin", "bob"])
    assert "already" in result.output
    result = runner.invoke(args=["users", "set-admin", "nobody"])
    assert result.exit_code != 0
    result = runner.invoke(args=["users", "set-admin", "bob", "--off"])
    assert result.exit_code == 0 and "bob is not an admin" in result.output
    rows = activity("admin_granted") + activity("admin_revoked")
    assert [(r.user_id, r.detail) for r in rows] == [(bob.id, {"by": "cli", "user_id": bob.id})] * 2
    robot = runner.invoke(args=["users", "create", "robot", "--bot"])
    assert robot.exit_code == 0
    refused = runner.invoke(args=["users", "set-admin", "robot"])
    assert refused.exit_code != 0 and "bot" in refused.output + str(refused.stderr_bytes or b"")
