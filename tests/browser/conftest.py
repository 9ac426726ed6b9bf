"""Browser tests: a real stack (gunicorn-eventlet, a Celery worker, PostgreSQL, Redis) driven by
Debian's Chromium through Playwright. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis as redis_lib
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PORTS = range(18400, 18500)
REDIS_URL = "redis://127.0.0.1:6379/12"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
PASSWORD = "correct horse battery"

def free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18400-18499")


class Stack:
    """One database, one Redis key prefix and Celery queue, a web process and a worker."""

    def __init__(self, admin_url: str, db_url: str, tmp: Path):
        self.admin_url = admin_url
        self.db_url = db_url
        self.tmp = tmp
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        tag = uuid.uuid4().hex[:10]
        self.prefix = f"simplechat-browser-{tag}:"
        self.env = {
            **os.environ,
            "SIMPLECHAT_CONFIG": "production",
            "SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
            "SESSION_COOKIE_SECURE": "0",
            "DATABASE_URL": db_url,
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": self.prefix,
            "CELERY_QUEUE": f"simplechat-browser-{tag}",
            "CHAT_RATE_LIMIT": "1/2s",
            "LOG_LEVEL": "WARNING",
        }
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None

    def _spawn(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")
        return subprocess.Popen(args, cwd=ROOT, env=env or self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def flask(self, *args: str) -> None:
        done = subprocess.run([str(BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT,
                              env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"flask {' '.join(args)}: {done.stderr[-2000:]}"

    def start_worker(self) -> None:
        self.worker = self._spawn("worker", [
            str(BIN / "celery"), "-A", "celery_worker.celery", "worker", "-P", "solo",
            "-Q", self.env["CELERY_QUEUE"], "--loglevel=warning", "--without-gossip",
            "--without-mingle", "--without-heartbeat",
        ])

    def start_web(self) -> None:
        self.web = self._spawn("web", [
            str(BIN / "gunicorn"), "-k", "eventlet", "-w", "1", "-b", f"127.0.0.1:{self.port}",
            "--timeout", "60", "wsgi:app",
        ])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.web.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.tmp / 'web.log'}")
            try:
                if requests.get(self.base_url + "/auth/login", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer; see {self.tmp / 'web.log'}")

    def stop_web(self) -> None:
        """Kill the web process as a crash would: open sockets just drop."""
        stop(self.web, signal.SIGKILL)
        self.web = None

    def restart_web(self) -> None:
        self.stop_web()
        self.start_web()

    def sql(self, query: str, **params):
        engine = create_engine(make_url(self.db_url.replace("postgresql://",
                                                            "postgresql+psycopg2://", 1)))
        try:
            with engine.begin() as conn:
                return conn.execute(text(query), params).all()
        finally:
            engine.dispose()

    def shutdown(self) -> None:
        # Nothing is left to store by now: no need for graceful shutdowns.
        for process, sig in ((self.web, signal.SIGKILL), (self.worker, signal.SIGQUIT)):
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)  # both at once; stop() waits for each
        self.stop_web()
        stop(self.worker, signal.SIGQUIT)
        client = redis_lib.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=self.prefix + "*", count=1000))
        keys += [self.env["CELERY_QUEUE"]]
        client.delete(*keys)
        client.close()


def stop(process: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _postgres_url() -> str:
    raw = os.environ.get("TEST_DATABASE_URL", "")
    if not raw.startswith(("postgresql://", "postgres://")):
        pytest.skip("browser tests run on PostgreSQL (TEST_DATABASE_URL=postgresql://...)")
    return raw


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    raw = _postgres_url()
    name = f"simplechat_browser_{os.getpid()}"
    url = make_url(raw.replace("postgres://", "postgresql://", 1))
    admin_url = url.set(database="postgres").render_as_string(hide_password=False)
    db_url = url.set(database=name).render_as_string(hide_password=False)
    admin = create_engine(admin_url.replace("postgresql://", "postgresql+psycopg2://", 1),
                          isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    stack = Stack(admin_url, db_url, tmp_path_factory.mktemp("browser-stack"))
    try:
        stack.flask("db", "upgrade")
        stack.start_worker()
        stack.start_web()
        yield stack
    finally:
        stack.shutdown()
        with admin.connect() as conn:
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# Collects Content-Security-Policy violations before any page script runs.
_CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline") +
                              " " + (e.sourceFile || "") + ":" + (e.lineNumber || ""));
});
"""


class Tab:
    """A browser context (its own cookies and storage) with one page, watching for script
    errors, CSP violations and dialogs."""

    def __init__(self, browser, base_url: str, width: int = 1280, height: int = 800,
                 timezone: str = "UTC"):
        self.base_url = base_url
        self.context = browser.new_context(viewport={"width": width, "height": height},
                                           base_url=base_url, timezone_id=timezone,
                                           locale="en-US")
        self.context.add_init_script(_CSP_WATCH)
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("console", self._console)
        self.page.on("dialog", self._dialog)

    def _console(self, msg) -> None:
        if msg.type == "error" and "Content Security Policy" in msg.text:
            self.errors.append(f"console: {msg.text}")

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def goto(self, path: str):
        self.page.goto(path)
        return self.page

    def csp_violations(self) -> list[str]:
        return self.page.evaluate("window.__cspViolations || []")

    def assert_clean(self) -> None:
        problems = self.errors + self.csp_violations()
        assert not problems, problems

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        size = self.page.viewport_size
        kind = "phone" if size["width"] < 600 else "desktop"
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}-{kind}.png"))

    def register(self, username: str, first: str, last: str) -> None:
        page = self.goto("/auth/register")
        page.fill("#username", username)
        page.fill("#first_name", first)
        page.fill("#last_name", last)
        page.fill("#email", f"{username}@example.com")
        page.fill("#password", PASSWORD)
        page.fill("#confirm", PASSWORD)
        page.get_by_role("button", name="Register").click()
        page.wait_for_url(lambda url: "/auth/register" not in url)

    def login(self, username: str) -> None:
        page = self.goto("/auth/login")
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(lambda url: "/auth/login" not in url)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_tab(browser, stack):
    opened: list[Tab] = []

    def open_(width: int = 1280, height: int = 800, timezone: str = "UTC") -> Tab:
        tab = Tab(browser, stack.base_url, width, height, timezone)
        opened.append(tab)
        return tab

    yield open_
    for tab in opened:
        tab.close()


def seed_messages(stack: Stack, sender: str, conversation_id: int, count: int) -> None:
    """Send ``count`` messages through the real send path in a separate process (no limit)."""
    script = (
        "import sys\n"
        "from sqlalchemy import select\n"
        "from simplechat import create_app\n"
        "from simplechat.extensions import db\n"
        "from simplechat.models import User\n"
        "from simplechat.chat.send import send_message\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    user = db.session.scalars(select(User).where(User.username == sys.argv[1])).one()\n"
        "    for n in range(1, int(sys.argv[3]) + 1):\n"
        "        ack = send_message(user, int(sys.argv[2]), f'seed message {n}')\n"
        "        assert ack['ok'], ack\n"
    )
    env = {**stack.env, "CHAT_RATE_LIMIT": "off"}
    done = subprocess.run([sys.executable, "-c", script, sender, str(conversation_id), str(count)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"seeding failed: {done.stderr[-2000:]}"


def wait_until(predicate, timeout: float = 15, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {message}")
