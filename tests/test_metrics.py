"""Prometheus metrics: /metrics with the default HTTP metrics, the simplechat_* chat metrics after
sends, refused sends and joins, and figures adding up across gunicorn processes; /metrics behind
METRICS_TOKEN, and hidden in production without one."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import app_in_context
from e2e.harness import BIN, ROOT, Stack, TestDatabase, base_env
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from config import database_url as normalise_url
from simplechat import create_app
from simplechat.extensions import db
from simplechat.infra.ids import new_message_id
from simplechat.messaging.send import send_message
from simplechat.messaging.tasks import store_message
from simplechat.observability.metrics import send_outcome


def scrape(client) -> dict[tuple[str, tuple], float]:
    """Every sample of ``/metrics``, keyed by name and sorted label pairs."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return parse(response.get_data(as_text=True))


def parse(body: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before, after, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_metrics_endpoint_serves_default_http_metrics(client):
    client.get("/healthz")
    client.get("/healthz")
    before = scrape(client)
    client.get("/healthz")
    after = scrape(client)
    assert delta(before, after, "flask_http_request_total", method="GET", status="200") == 1
    assert delta(before, after, "flask_http_request_duration_seconds_count",
                 method="GET", status="200", url_rule="/healthz") == 1
    # /metrics itself is not counted, and every chat series exists before its first event.
    assert value(after, "simplechat_messages_sent_total", outcome="rate_limited") >= 0
    assert ("simplechat_messages_sent_total", (("outcome", "rate_limited"),)) in after
    assert ("simplechat_sockets_connected", ()) in after


def test_send_refused_send_and_join_move_the_chat_metrics(
    client, make_user, make_conversation, socket_client
):
    ada, bob, eve = make_user("ada"), make_user("bob"), make_user("eve")
    conversation = make_conversation(ada, bob)
    before = scrape(client)

    sio = socket_client(ada)
    connected = scrape(client)
    assert delta(before, connected, "simplechat_sockets_connected") == 1

    joined = sio.emit("join", {"conversation_id": conversation.id}, namespace="/chat",
                      callback=True)
    assert joined["ok"]
    refused_join = socket_client(eve).emit("join", {"conversation_id": conversation.id},
                                           namespace="/chat", callback=True)
    assert refused_join == {"ok": False, "error": "forbidden"}
    sent = sio.emit("send_message", {"conversation_id": conversation.id, "message": "hi"},
                    namespace="/chat", callback=True)
    assert sent["ok"]
    limited = sio.emit("send_message", {"conversation_id": conversation.id, "message": "again"},
                       namespace="/chat", callback=True)
    assert limited["error"] == "rate_limited"
    assert send_message(eve, conversation.id, "not mine")["error"] == "forbidden"
    assert send_message(bob, conversation.id, "x" * 10_000)["error"] == "too_long"
    assert send_message(bob, conversation.id, "   ")["error"] == "empty"
    after = scrape(client)

    def moved(name, **labels):
        return delta(before, after, name, **labels)

    assert moved("simplechat_messages_sent_total", outcome="ok") == 1
    assert moved("simplechat_messages_sent_total", outcome="rate_limited") == 1
    assert moved("simplechat_messages_sent_total", outcome="forbidden") == 1
    assert moved("simplechat_messages_sent_total", outcome="invalid") == 2
    assert moved("simplechat_messages_sent_total", outcome="error") == 0
    assert moved("simplechat_send_duration_seconds_count") == 5
    assert moved("simplechat_send_duration_seconds_sum") > 0
    assert moved("simplechat_joins_total", outcome="ok") == 1
    assert moved("simplechat_joins_total", outcome="forbidden") == 1
    assert (moved("simplechat_history_reads_total", source="cache")
            + moved("simplechat_history_reads_total", source="sql")) == 1
    # Celery runs inline in tests, so the accepted message was written: one lag observation.
    assert moved("simplechat_message_write_lag_seconds_count") == 1
    assert moved("simplechat_sockets_connected") == 2  # ada and eve

    sio.disconnect("/chat")
    assert delta(before, scrape(client), "simplechat_sockets_connected") == 1


def test_history_api_counts_where_it_read_from(client, auth, make_user, make_conversation):
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    assert send_message(ada, conversation.id, "one")["ok"]
    auth.login("ada")
    before = scrape(client)
    url = f"/api/conversations/{conversation.id}/messages"
    assert client.get(url).status_code == 200
    after = scrape(client)
    total = sum(delta(before, after, "simplechat_history_reads_total", source=s)
                for s in ("cache", "sql"))
    assert total == 1


def test_refused_write_counts_a_write_failure(client, database_uri, make_user):
    if database_uri.startswith("sqlite"):
        pytest.skip("SQLite does not enforce foreign keys here")
    ada = make_user("ada")
    before = scrape(client)
    payload = {"id": new_message_id(), "conversation_id": 999_999, "sender": ada.id,
               "message": "to nowhere", "timestamp": "2026-01-01 00:00:00"}
    assert store_message.apply(args=[payload]).get(disable_sync_subtasks=False) == 0
    after = scrape(client)
    assert delta(before, after, "simplechat_message_write_failures_total", reason="refused") == 1
    assert delta(before, after, "simplechat_message_write_lag_seconds_count") == 0


# --------------------------------------------------------------------------- who may scrape

METRICS_TOKEN = "metrics-" + "s3cret" * 4


def test_metrics_need_the_bearer_token_when_one_is_set(database_uri, redis_url):
    for app in app_in_context(database_uri, redis_url, METRICS_TOKEN=METRICS_TOKEN):
        client = app.test_client()
        for headers in ({}, {"Authorization": "Bearer wrong"},
                        {"Authorization": f"Basic {METRICS_TOKEN}"},
                        {"Authorization": f"Bearer {METRICS_TOKEN}x"},
                        {"Authorization": METRICS_TOKEN}):
            response = client.get("/metrics", headers=headers,
                                  environ_base={"REMOTE_ADDR": "127.0.0.1"})
            assert response.status_code == 401, headers
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert b"simplechat_" not in response.data
        response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert response.status_code == 200
        assert b"simplechat_messages_sent_total" in response.data


@pytest.fixture
def production_app(monkeypatch, database_uri, redis_url):
    """``make(**overrides)``: the production configuration (ProductionConfig) on the test
    database and Redis."""
    made = []

    def make(**overrides):
        monkeypatch.setenv("SECRET_KEY", "production-test-" + "x" * 32)
        settings = {"SQLALCHEMY_DATABASE_URI": database_uri, "REDIS_URL": redis_url,
                    "REDIS_KEY_PREFIX": "simplechat-test:production-metrics:",
                    "SOCKETIO_MESSAGE_QUEUE": None, "SOCKETIO_ASYNC_MODE": "threading"}
        made.append(create_app("production", {**settings, **overrides}))
        return made[-1]

    yield make
    for app in made:
        with app.app_context():
            db.engine.dispose()


def test_metrics_are_hidden_in_production_without_a_token(production_app):
    app = production_app()
    client = app.test_client()
    # Whatever the address: behind a proxy every scrape would come from 127.0.0.1.
    for address in ("127.0.0.1", "10.0.0.5", "203.0.113.9"):
        response = client.get("/metrics", environ_base={"REMOTE_ADDR": address})
        assert response.status_code == 404, address
        assert b"simplechat_" not in response.data
    assert client.get("/metrics", headers={"Authorization": "Bearer anything"}
                      ).status_code == 404


def test_metrics_answer_the_token_in_production(production_app):
    app = production_app(METRICS_TOKEN=METRICS_TOKEN)
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert b"simplechat_messages_sent_total" in response.data


@pytest.mark.parametrize("ack, outcome", [
    ({"ok": True}, "ok"),
    ({"ok": False, "error": "rate_limited", "retry_after": 1}, "rate_limited"),
    ({"ok": False, "error": "forbidden"}, "forbidden"),
    ({"ok": False, "error": "too_long"}, "invalid"),
    ({"ok": False, "error": "empty"}, "invalid"),
    ({"ok": False, "error": "invalid"}, "invalid"),
    ({"ok": False, "error": "unavailable"}, "error"),
    ({"ok": False, "error": "something new"}, "error"),
])
def test_send_outcomes_fold_error_codes(ack, outcome):
    assert send_outcome(ack) == outcome


# --------------------------------------------------------------------------- end to end

PORTS = range(18100, 18200)
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}
E2E_REDIS = "redis://127.0.0.1:6379/14"
PASSWORD = "correct horse battery"


def wait_for(probe, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = probe()
        except Exception:
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def metrics_stack(tmp_path):
    """A deployment (see tests/e2e/harness.py) on a fresh PostgreSQL database, Redis db 14 and
    ports 18100-18199, whose web processes share an empty multiprocess metrics directory."""
    raw = os.environ.get("TEST_DATABASE_URL", "")
    if not raw.startswith(("postgres", "postgresql")):
        pytest.skip("needs TEST_DATABASE_URL pointing at PostgreSQL")
    admin = make_url(normalise_url(raw)).set(database="postgres")
    database = TestDatabase.create_migrated(
        "postgresql", admin.render_as_string(hide_password=False), tmp_path)
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    # The stack runs the production configuration: /metrics answers only with the token.
    stack = Stack(database, tmp_path, redis_url=E2E_REDIS, ports=PORTS, label="e2e-metrics",
                  PROMETHEUS_MULTIPROC_DIR=str(multiproc), METRICS_TOKEN=METRICS_TOKEN)
    try:
        yield stack
    finally:
        try:
            stack.close()
        finally:
            database.drop()


@pytest.fixture
def e2e_env(metrics_stack) -> dict[str, str]:
    """What the stack's processes get on top of the environment (PROMETHEUS_MULTIPROC_DIR
    among it)."""
    return metrics_stack.env


def flask(env, *args) -> str:
    # Only the web processes write to the metrics directory.
    env = base_env({k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"})
    result = subprocess.run([str(BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def start_gunicorn(metrics_stack):
    def start() -> tuple[str, int]:
        """A gunicorn-eventlet server with one worker, answering: its URL and worker's pid."""
        web = metrics_stack.start_web(workers=1)
        workers = web.worker_pids()
        assert len(workers) == 1
        return web.url, workers[0]

    return start


def login(base: str, username: str):
    import requests

    http = requests.Session()
    page = http.get(base + "/auth/login", timeout=5).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = http.post(base + "/auth/login", allow_redirects=False, timeout=5,
                         data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.text
    return http


def open_socket(base: str, http):
    import socketio

    sio = socketio.Client(reconnection=False)
    cookies = "; ".join(f"{c.name}={c.value}" for c in http.cookies)
    sio.connect(base, namespaces=["/chat"], transports=["websocket"],
                headers={"Cookie": cookies}, wait_timeout=10)
    return sio


@pytest.mark.e2e
def test_two_gunicorn_processes_add_up_in_metrics(e2e_env, start_gunicorn):
    """Two gunicorn-eventlet servers share one PROMETHEUS_MULTIPROC_DIR: /metrics from either
    shows the sum of both processes' figures."""
    import requests

    for name in ("ada", "bob"):
        flask(e2e_env, "users", "create", name, "--email", f"{name}@example.com",
              "--password", PASSWORD)
    created = flask(e2e_env, "conversations", "create", "--users", "ada,bob")
    conversation_id = int(re.search(r"conversation (\d+)", created).group(1))

    (a, worker_a), (b, worker_b) = start_gunicorn(), start_gunicorn()
    sockets = [open_socket(a, login(a, "ada")), open_socket(b, login(b, "bob"))]
    try:
        for sio in sockets:
            joined = sio.call("join", {"conversation_id": conversation_id}, namespace="/chat",
                              timeout=10)
            assert joined["ok"], joined
            sent = sio.call("send_message", {"conversation_id": conversation_id,
                                             "message": "hello"}, namespace="/chat", timeout=10)
            assert sent["ok"], sent
        for _ in range(2):
            assert requests.get(a + "/healthz", timeout=5).status_code == 200
        for _ in range(3):
            assert requests.get(b + "/healthz", timeout=5).status_code == 200

        assert requests.get(a + "/metrics", timeout=5).status_code == 401
        from_a = parse(requests.get(a + "/metrics", timeout=5, headers=SCRAPE).text)
        from_b = parse(requests.get(b + "/metrics", timeout=5, headers=SCRAPE).text)
        for samples in (from_a, from_b):
            assert value(samples, "simplechat_sockets_connected") == 2
            assert value(samples, "simplechat_joins_total", outcome="ok") == 2
            assert value(samples, "simplechat_messages_sent_total", outcome="ok") == 2
            assert value(samples, "simplechat_send_duration_seconds_count") == 2
            # The readiness waits at start-up plus the five requests above.
            healthz = value(samples, "flask_http_request_duration_seconds_count",
                            method="GET", status="200", url_rule="/healthz")
            assert healthz >= 7
        assert from_a == from_b  # one picture, whichever process is scraped
        pids = {int(f.stem.rsplit("_", 1)[-1])
                for f in Path(e2e_env["PROMETHEUS_MULTIPROC_DIR"]).glob("counter_*.db")}
        assert pids == {worker_a, worker_b}
    finally:
        for sio in sockets:
            sio.disconnect()
    wait_for(lambda: value(parse(requests.get(a + "/metrics", timeout=5, headers=SCRAPE).text),
                           "simplechat_sockets_connected") == 0, what="sockets closed")
