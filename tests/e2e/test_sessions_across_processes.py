"""Sessions end on every process: two gunicorn-eventlet web processes, a Celery worker,
PostgreSQL and Redis. A logout, a password change or a sign-out made on one process closes the
session's sockets on the other, and its cookie stops working there."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests
import socketio

from .harness import BIN, ChatUser, csrf_token, login

pytestmark = pytest.mark.e2e


def post_form(user: ChatUser, base_url: str, page: str, action: str, **fields) -> int:
    """POST a form the way the page does (with its CSRF token); the status code."""
    html = user.session.get(base_url + page, timeout=10)
    html.raise_for_status()
    response = user.session.post(base_url + action, timeout=10, allow_redirects=False,
                                 data={"csrf_token": csrf_token(html.text), **fields})
    return response.status_code


def saved_copy(user: ChatUser) -> ChatUser:
    """Another client holding a copy of the user's cookies."""
    thief = requests.Session()
    for cookie in user.session.cookies:
        thief.cookies.set(cookie.name, cookie.value)
    return ChatUser(user.username, user.password, thief)


def profile_opens(user: ChatUser, base_url: str) -> bool:
    response = user.session.get(base_url + "/profile/", timeout=10, allow_redirects=False)
    return response.status_code == 200


def closed_with(sock, reason: str, timeout: float = 10.0) -> float | None:
    """Seconds until the socket was told ``reason`` and closed, or None if it was not."""
    start = time.monotonic()
    if not sock.wait_for(lambda s: not s.connected and s.events("session_ended"), timeout):
        return None
    assert sock.events("session_ended") == [{"reason": reason}]
    return time.monotonic() - start


def test_logout_password_change_and_sign_out_end_sessions_on_the_other_process(stack):
    web_a, web_b = stack.start_web(), stack.start_web()
    stack.start_worker()
    ada = stack.register(web_a, "ada")
    bob = stack.register(web_b, "bob")
    conversation_id = ada.start_conversation(web_a, [bob.id])
    phone = login(web_b.url, "ada")  # ada's second session

    on_b = ada.socket(web_b)  # ada's first session, its socket on the other process
    phone_on_b = phone.socket(web_b)
    bob_on_b = bob.socket(web_b)
    bob_on_b.join(conversation_id)
    stolen = saved_copy(ada)
    assert profile_opens(stolen, web_b.url)

    # 1. A logout on A closes that session's socket on B; a saved copy of its cookie is refused
    # on B for pages and sockets; ada's other session carries on.
    assert post_form(ada, web_a.url, "/profile/", "/auth/logout") == 302
    took = closed_with(on_b, "logged_out")
    assert took is not None, "the socket on B stayed open after the logout on A"
    print(f"\nlogout on A -> socket on B closed after {took * 1000:.0f} ms")
    assert not profile_opens(stolen, web_b.url) and not profile_opens(ada, web_b.url)
    with pytest.raises(socketio.exceptions.ConnectionError):
        stolen.socket(web_b)
    assert phone_on_b.connected
    assert phone_on_b.send(conversation_id, "from the phone")["ok"] is True

    # 2. A password change made on A ends ada's other sessions, wherever their sockets are,
    # and keeps the session that made it.
    laptop = login(web_a.url, "ada")
    laptop_on_a = laptop.socket(web_a)
    new_password = "a brand new passphrase"
    assert post_form(laptop, web_a.url, "/profile/password", "/profile/password",
                     current_password=laptop.password, password=new_password,
                     confirm=new_password) == 302
    took = closed_with(phone_on_b, "password_changed")
    assert took is not None, "the phone's socket on B stayed open after the password change"
    print(f"password change on A -> socket on B closed after {took * 1000:.0f} ms")
    assert not profile_opens(phone, web_b.url)
    assert laptop_on_a.connected and profile_opens(laptop, web_b.url)
    time.sleep(2.1)  # the rate limit (1 message per 2 s) of ada's send above
    assert laptop_on_a.send(conversation_id, "still the laptop")["ok"] is True

    # 3. The command line (a process of its own) signs ada out everywhere.
    laptop_on_b = laptop.socket(web_b)
    result = subprocess.run([str(BIN / "flask"), "--app", "wsgi", "users", "sign-out", "ada",
                             "--all"], env=stack._env(None), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 session(s) of ada signed out" in result.stdout
    for sock in (laptop_on_a, laptop_on_b):
        assert closed_with(sock, "signed_out") is not None, sock.name
    assert not profile_opens(laptop, web_a.url)

    # 4. Presence: someone who shares no conversation connects and leaves on A; bob, on B,
    # hears nothing of it, and nothing but ada's going offline reached him.
    loner = stack.register(web_a, "loner")
    before = len(bob_on_b.events("presence"))
    loner_socket = loner.socket(web_a)
    loner_socket.close()
    time.sleep(1.0)  # a presence event would have crossed processes by now
    assert bob_on_b.events("presence")[before:] == []
    assert all(p["user_id"] == ada.id for p in bob_on_b.events("presence"))
    assert bob_on_b.connected
