"""Webhooks against a real local HTTP receiver: signed deliveries, retries while the receiver is
down, a recorded failure after the last try, addresses refused (server-side request forgery,
IPv4 addresses carried in IPv6 ones included), a receiver trickling its answer cut off at the
deadline, the most webhooks a conversation may have, and the incoming hook."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import app_in_context
from sqlalchemy import select

from simplechat.auth.tokens import create_token
from simplechat.extensions import db
from simplechat.models import GenericErrorLog, Message, User, Webhook
from simplechat.webhooks import delivery
from simplechat.webhooks.hooks import UnsafeURL, checked_addresses
from tests.e2e.slow_receiver import TLS_ANSWER, TrickleReceiver


class Receiver:
    """An HTTP server in a thread that records each POST; answers 503 to the first ``fail``."""

    def __init__(self, fail: int = 0):
        self.fail = fail
        self.requests: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = 503 if len(receiver.requests) <= receiver.fail else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?x=1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def wait_for(probe, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)
    return value


@pytest.fixture
def app(database_uri, redis_url, monkeypatch):
    # The same doubling backoff, from 20 ms: tasks run inline here, retries included.
    monkeypatch.setattr(delivery, "BACKOFF_FIRST", 0.02)
    yield from app_in_context(database_uri, redis_url, CHAT_RATE_LIMIT="off",
                              WEBHOOK_ALLOW_PRIVATE=True)


@pytest.fixture
def chat(make_user, make_conversation):
    ada, bob = make_user("ada"), make_user("bob")
    return ada, bob, make_conversation(ada, bob)


@pytest.fixture
def receiver():
    made = []

    def make(fail: int = 0) -> Receiver:
        made.append(Receiver(fail))
        return made[-1]

    yield make
    for r in made:
        r.close()


def outgoing(runner, conversation_id: int, url: str) -> str:
    result = runner.invoke(args=["webhooks", "create", "--conversation", str(conversation_id),
                                 "--url", url])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def post(client, ada, conversation_id, text):
    token = create_token(ada, "t").secret
    answer = client.post(f"/api/conversations/{conversation_id}/messages", json={"message": text},
                         headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 201, answer.get_data(as_text=True)
    return answer.get_json()["message"]


def failures() -> list[GenericErrorLog]:
    db.session.rollback()
    return list(db.session.scalars(select(GenericErrorLog)))


def test_a_new_message_is_posted_signed_to_the_outgoing_hook(runner, client, chat, receiver):
    ada, _, conversation = chat
    hook = receiver()
    secret = outgoing(runner, conversation.id, hook.url)
    assert len(secret) == 64
    message = post(client, ada, conversation.id, "ping the hook")
    wait_for(lambda: hook.requests)
    headers, body = hook.requests[0]
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-simplechat-signature"] == expected
    assert headers["content-type"] == "application/json"
    sent = json.loads(body)
    assert sent["event"] == "message" and sent["conversation_id"] == conversation.id
    assert sent["message"]["id"] == message["id"]
    assert sent["message"]["message"] == "ping the hook"
    # A retried send is not a new message: no second delivery.
    listed = runner.invoke(args=["webhooks", "list"])
    assert hook.url in listed.output


def test_a_receiver_that_is_down_is_retried_until_it_answers(runner, client, chat, receiver):
    ada, _, conversation = chat
    hook = receiver(fail=3)
    secret = outgoing(runner, conversation.id, hook.url)
    post(client, ada, conversation.id, "eventually")
    wait_for(lambda: len(hook.requests) >= 4)
    bodies = {body for _, body in hook.requests}
    assert len(bodies) == 1  # the same delivery each time
    for headers, body in hook.requests:
        assert hmac.compare_digest(
            headers["x-simplechat-signature"],
            "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest())
    time.sleep(0.3)
    assert len(hook.requests) == 4 and failures() == []


def test_a_receiver_that_stays_down_is_recorded_as_failed(runner, client, chat, receiver):
    ada, _, conversation = chat
    hook = receiver(fail=1000)
    outgoing(runner, conversation.id, hook.url)
    message = post(client, ada, conversation.id, "nobody listens")
    rows = wait_for(lambda: [r for r in failures() if r.error_type == "WebhookDeliveryFailed"])
    assert len(hook.requests) == 7  # the first try and six retries
    assert message["id"] in rows[0].message and "HTTP 503" in rows[0].message


def test_private_addresses_are_refused_unless_allowed(app, runner, chat):
    _, _, conversation = chat
    for url in ("http://127.0.0.1/", "http://localhost:8000/x", "http://10.1.2.3/",
                "http://192.168.0.1/", "http://[::1]/", "http://169.254.169.254/latest",
                "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/"):
        with pytest.raises(UnsafeURL):
            checked_addresses(url, allow_private=False)
        checked_addresses(url, allow_private=True)
    for url in ("ftp://example.com/", "http:///nohost", "http://user:pw@93.184.216.34/",
                "javascript:alert(1)"):
        with pytest.raises(UnsafeURL):
            checked_addresses(url, allow_private=True)
    assert checked_addresses("https://93.184.216.34/hook", False)[2] == ["93.184.216.34"]
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    refused = runner.invoke(args=["webhooks", "create", "--conversation", str(conversation.id),
                                  "--url", "http://127.0.0.1:9/x"])
    assert refused.exit_code == 1 and "private" in refused.output
    assert db.session.scalars(select(Webhook)).all() == []


def test_delivery_checks_the_address_again(app, runner, client, chat, receiver):
    """A hook made while private addresses were allowed (or whose name now resolves to one,
    DNS rebinding) is refused at delivery, and that is recorded."""
    ada, _, conversation = chat
    hook = receiver()
    outgoing(runner, conversation.id, hook.url)
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    post(client, ada, conversation.id, "not to a private address")
    rows = wait_for(lambda: [r for r in failures() if r.error_type == "UnsafeURL"])
    assert "private" in rows[0].message and hook.requests == []


def test_an_incoming_hook_posts_as_its_bot(runner, client, chat):
    ada, _, conversation = chat
    made = runner.invoke(args=["webhooks", "create", "--conversation", str(conversation.id),
                               "--incoming", "--name", "Deploys"])
    assert made.exit_code == 0, made.output
    path = made.output.strip().splitlines()[-1]
    assert path.startswith("/api/hooks/")
    answer = client.post(path, json={"message": "build 42 is green"})
    assert answer.status_code == 201, answer.get_data(as_text=True)
    bot = db.session.scalar(select(User).where(User.is_bot.is_(True)))
    assert bot.first_name == "Deploys"
    assert answer.get_json()["message"]["sender"] == bot.id
    db.session.expire_all()
    stored = db.session.scalars(select(Message)).all()
    assert [(m.sender_id, m.text) for m in stored] == [(bot.id, "build 42 is green")]
    assert client.post(path, json={"nope": 1}).status_code == 400
    assert client.post("/api/hooks/not-a-secret", json={"message": "x"}).status_code == 404
    hook_id = db.session.scalar(select(Webhook.id))
    assert runner.invoke(args=["webhooks", "delete", str(hook_id)]).exit_code == 0
    gone = client.post(path, json={"message": "after delete"})
    assert gone.status_code == 404 and gone.get_json() == {"ok": False, "error": "not_found"}


# --------------------------------------------------------------------------- embedded IPv4

# IPv6 addresses that carry an IPv4 address, which a translator or relay then reaches.
CARRIED = [
    # (URL host, what it leads to, public?)
    ("[::127.0.0.1]", "IPv4-compatible loopback", False),
    ("[::10.0.0.1]", "IPv4-compatible private", False),
    ("[::93.184.216.34]", "IPv4-compatible public", True),
    ("[::ffff:127.0.0.1]", "IPv4-mapped loopback", False),
    ("[::ffff:169.254.169.254]", "IPv4-mapped metadata service", False),
    ("[::ffff:93.184.216.34]", "IPv4-mapped public", True),
    ("[64:ff9b::127.0.0.1]", "NAT64 loopback", False),
    ("[64:ff9b::a9fe:a9fe]", "NAT64 metadata service", False),
    ("[64:ff9b::192.168.1.1]", "NAT64 private", False),
    ("[64:ff9b::93.184.216.34]", "NAT64 public", True),
    ("[64:ff9b:1::127.0.0.1]", "local-use NAT64 loopback", False),
    ("[64:ff9b:1::93.184.216.34]", "local-use NAT64: the local translator decides", False),
    ("[64:ff9b:1:7f00:1::]", "local-use NAT64 /48 form", False),
    ("[2002:7f00:1::]", "6to4 of loopback", False),
    ("[2002:c0a8:101::1]", "6to4 of 192.168.1.1", False),
    ("[2002:a9fe:a9fe::1]", "6to4 of the metadata service", False),
    ("[2002:5db8:d822::1]", "6to4 of a public address", True),
    ("[2001:0:7f00:1::1]", "Teredo whose server is loopback", False),
    ("[2001:0:5db8:d822::80ff:fffe]", "Teredo whose client is loopback (obfuscated)", False),
    ("[2606:2800:220:1:248:1893:25c8:1946]", "plain global IPv6", True),
]


@pytest.mark.parametrize("host, leads_to, public", CARRIED, ids=[c[1] for c in CARRIED])
def test_ipv6_addresses_are_judged_by_the_ipv4_address_they_carry(host, leads_to, public):
    url = f"http://{host}:8080/hook"
    if public:
        assert checked_addresses(url, allow_private=False)[0] == host.strip("[]")
    else:
        with pytest.raises(UnsafeURL, match="private or local"):
            checked_addresses(url, allow_private=False)
    checked_addresses(url, allow_private=True)  # a trusted LAN may


# --------------------------------------------------------------------------- deadline


@pytest.fixture
def trickler():
    made = []

    def make(**kwargs) -> TrickleReceiver:
        made.append(TrickleReceiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_a_receiver_trickling_its_answer_is_cut_off_at_the_deadline(app, runner, client, chat,
                                                                    trickler):
    """One byte every 0.2 s would keep a per-read timeout waiting for ever: each try ends at
    the deadline instead, counts as failed, and is retried with the backoff."""
    ada, _, conversation = chat
    slow = trickler(interval=0.2)
    app.config["WEBHOOK_DELIVERY_DEADLINE"] = 1.0
    outgoing(runner, conversation.id, slow.url)
    message = post(client, ada, conversation.id, "to a slow receiver")
    rows = wait_for(lambda: [r for r in failures() if r.error_type == "WebhookDeliveryFailed"],
                    timeout=90)
    assert message["id"] in rows[0].message and "TimeoutError" in rows[0].message
    wait_for(lambda: slow.given_up == 7)
    assert slow.connections == 7  # the first try and six retries, each given up
    assert all(b'"to a slow receiver"' in request for request in slow.requests)


def test_a_tls_handshake_trickled_out_is_cut_off_at_the_deadline(trickler):
    slow = trickler(interval=0.2, scheme="https", answer=TLS_ANSWER)
    outcome = []

    def deliver():
        try:
            outcome.append(delivery.post_signed(slow.url, "s" * 64, b"{}", True, deadline=1.0))
        except Exception as exc:  # noqa: BLE001  (the outcome is what the test looks at)
            outcome.append(exc)

    thread = threading.Thread(target=deliver, daemon=True)
    thread.start()
    thread.join(60)
    assert outcome and isinstance(outcome[0], TimeoutError), outcome
    wait_for(lambda: slow.given_up == 1)


def test_a_name_that_takes_long_to_resolve_is_cut_off_at_the_deadline(monkeypatch):
    """The lookup is inside the deadline: a resolver that hangs (no answer, retries) cannot
    hold the delivery's worker past it. The stand-in resolver blocks until the test ends."""
    released = threading.Event()

    def hanging(*args, **kwargs):
        released.wait(30)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    try:
        with pytest.raises(TimeoutError):
            delivery.post_signed("http://hangs.example/", "s" * 64, b"{}", False, deadline=0.5)
    finally:
        released.set()


# --------------------------------------------------------------------------- how many


def test_a_conversation_has_at_most_the_configured_number_of_webhooks(app, runner, chat,
                                                                      receiver, make_user,
                                                                      make_conversation):
    ada, bob, conversation = chat
    app.config["WEBHOOK_MAX_PER_CONVERSATION"] = 3
    target = receiver()

    def create(conversation_id, *args):
        return runner.invoke(args=["webhooks", "create", "--conversation",
                                   str(conversation_id), *args])

    assert create(conversation.id, "--url", target.url + "&1").exit_code == 0
    assert create(conversation.id, "--incoming").exit_code == 0
    assert create(conversation.id, "--url", target.url + "&2").exit_code == 0
    for refused in (create(conversation.id, "--url", target.url + "&3"),
                    create(conversation.id, "--incoming")):
        assert refused.exit_code == 1
        assert "has 3 webhooks, the most it may have (3)" in refused.output
    db.session.rollback()
    made = db.session.scalars(select(Webhook).where(
        Webhook.conversation_id == conversation.id)).all()
    assert len(made) == 3
    bots = db.session.scalars(select(User).where(User.is_bot.is_(True))).all()
    assert len(bots) == 1  # the refused incoming hook made no bot user
    other = make_conversation(ada, make_user("cy"))
    assert create(other.id, "--url", target.url + "&other").exit_code == 0
    assert runner.invoke(args=["webhooks", "delete", str(made[0].id)]).exit_code == 0
    assert create(conversation.id, "--url", target.url + "&4").exit_code == 0
