"""Browser tests: a real stack (gunicorn-eventlet, a Celery worker, PostgreSQL, Redis) driven by
Debian's Chromium through Playwright. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import pytest
from e2e.harness import (
    BIN,
    PASSWORD,
    ROOT,
    Stack,
    TestDatabase,
    WebProcess,
    base_env,
    free_port,
    wait_until,
)
from sqlalchemy.engine import make_url

from tests.mailbox import Mailbox

__all__ = [  # what the browser tests import
    "PASSWORD", "Tab", "assert_no_axe_violations", "axe_results", "opened_conversation",
    "pick_in_select2", "seed_channels", "seed_messages", "seed_texts", "start_direct",
    "wait_until",
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PORTS = range(18400, 18500)
REDIS_URL = "redis://127.0.0.1:6379/12"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


class BrowserStack(Stack):
    """The end-to-end harness's deployment (production config, plain-http cookies, a key prefix
    and Celery queue of its own) on Redis db 12, with one web process on a port that stays the
    same when it is killed and started again, as the browser's pages expect."""

    def __init__(self, database: TestDatabase, log_dir: Path, mailbox: Mailbox):
        # Every tab comes from 127.0.0.1: the per-address limits on registering and logging in
        # (tests/test_throttles.py) would refuse the suite's own users after the first ten.
        super().__init__(database, log_dir, redis_url=REDIS_URL, ports=PORTS, label="browser",
                         CHAT_RATE_LIMIT="1/2s", REGISTER_RATE_LIMIT="1000/hour",
                         LOGIN_RATE_LIMIT_IP="1000/5minute",
                         # Small enough for a "too large" upload that is quick to make.
                         CHAT_MAX_ATTACHMENT_BYTES=str(2 * 1024 * 1024),
                         # Slash commands' services run on 127.0.0.1 here.
                         WEBHOOK_ALLOW_PRIVATE="1")
        self.port = free_port(PORTS)
        self.base_url = f"http://127.0.0.1:{self.port}"
        # Mail (password reset) goes to the session's SMTP server, links to this web process.
        self.env.update({k: str(v) for k, v in mailbox.settings(SITE_URL=self.base_url).items()})
        self.web: WebProcess | None = None

    def flask(self, *args: str) -> str:
        """Run a ``flask`` command against the stack; what it printed."""
        done = subprocess.run([str(BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT,
                              env=base_env(self.env), capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"flask {' '.join(args)}: {done.stderr[-2000:]}"
        return done.stdout

    def start_web(self, **options) -> WebProcess:
        self.web = super().start_web(port=self.port, **options)
        return self.web

    def stop_web(self) -> None:
        """Kill the web process as a crash would: open sockets just drop."""
        if self.web is not None:
            self.web.kill()
            self.web = None

    def sql(self, query: str, **params) -> list[tuple]:
        return self.database.rows(query, **params)

    def shutdown(self) -> None:
        # Nothing is left to store by now: no need for graceful shutdowns.
        for process in self.processes:
            process.signal(signal.SIGKILL if isinstance(process, WebProcess) else signal.SIGQUIT)
        self.close()


def _postgres_url() -> str:
    raw = os.environ.get("TEST_DATABASE_URL", "")
    if not raw.startswith(("postgresql://", "postgres://")):
        pytest.skip("browser tests run on PostgreSQL (TEST_DATABASE_URL=postgresql://...)")
    return raw


@pytest.fixture(scope="session")
def mailbox():
    """A real SMTP server (aiosmtpd) that keeps what the stack mails."""
    box = Mailbox().start()
    yield box
    box.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory, mailbox):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    raw = _postgres_url()
    admin_url = make_url(raw.replace("postgres://", "postgresql://", 1)).set(database="postgres")
    log_dir = tmp_path_factory.mktemp("browser-stack")
    database = TestDatabase.create_migrated(
        "postgresql", admin_url.render_as_string(hide_password=False), log_dir)
    stack = BrowserStack(database, log_dir, mailbox)
    try:
        stack.start_worker()
        stack.start_web()
        yield stack
    finally:
        try:
            stack.shutdown()
        finally:
            database.drop()


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
                 timezone: str = "UTC", color_scheme: str = "light"):
        self.base_url = base_url
        self.context = browser.new_context(viewport={"width": width, "height": height},
                                           base_url=base_url, timezone_id=timezone,
                                           locale="en-US", color_scheme=color_scheme)
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

    def screenshot(self, name: str, full_page: bool = False) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        size = self.page.viewport_size
        kind = "phone" if size["width"] < 600 else "desktop"
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}-{kind}.png"), full_page=full_page)

    def register(self, username: str, first: str, last: str) -> None:
        page = self.goto("/auth/register")
        page.fill("#username", username)
        page.fill("#first_name", first)
        page.fill("#last_name", last)
        page.fill("#email", f"{username}@example.com")
        page.fill("#password", PASSWORD)
        page.fill("#confirm", PASSWORD)
        page.get_by_role("button", name="Register").click()
        self._left_form("/auth/register")

    def login(self, username: str) -> None:
        page = self.goto("/auth/login")
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        page.get_by_role("button", name="Log in").click()
        self._left_form("/auth/login")

    def _left_form(self, path: str) -> None:
        """Wait until the form's page is left, or fail at once with the errors it shows (the
        browser stack lives for the whole session, so a username another module took is
        refused here, not timed out on). The password is hashed on the CPU pool: on a loaded
        machine that takes a while."""
        page = self.page
        refused = page.locator("#form-errors, #register-error, #login-error")
        deadline = time.monotonic() + 30
        while path in page.url:
            if refused.count():
                raise AssertionError(f"{path} refused: {refused.first.inner_text()}")
            assert time.monotonic() < deadline, f"still on {path} after 30 s"
            page.wait_for_timeout(100)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_tab(browser, stack):
    opened: list[Tab] = []

    def open_(width: int = 1280, height: int = 800, timezone: str = "UTC",
              color_scheme: str = "light") -> Tab:
        tab = Tab(browser, stack.base_url, width, height, timezone, color_scheme)
        opened.append(tab)
        return tab

    yield open_
    for tab in opened:
        tab.close()


def pick_in_select2(page, field: str, search: str, choice: str) -> None:
    """Type ``search`` into the Select2 box of the ``field`` select and click ``choice``."""
    page.locator(f"#{field} + .select2 .select2-search__field").click()
    page.keyboard.type(search)
    page.locator(".select2-results__option", has_text=choice).click()


def opened_conversation(page) -> int:
    """The id of the conversation that starting one (on /chat/new) has opened."""
    page.wait_for_url(re.compile(r"/chat/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def start_direct(tab: Tab, search: str, choice: str):
    """The tab's user starts a direct conversation with the person Select2 finds as
    ``choice``: its page, and its id."""
    page = tab.goto("/chat/new")
    pick_in_select2(page, "participants", search, choice)
    page.click("#start-button")
    return page, opened_conversation(page)


def seed_texts(stack: BrowserStack, sender: str, conversation_id: int, texts: list[str]) -> None:
    """Send these texts through the real send path in a separate process (no limit)."""
    script = (
        "import json, sys\n"
        "from sqlalchemy import select\n"
        "from simplechat import create_app\n"
        "from simplechat.extensions import db\n"
        "from simplechat.models import User\n"
        "from simplechat.messaging.send import send_message\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    user = db.session.scalars(select(User).where(User.username == sys.argv[1])).one()\n"
        "    for text in json.loads(sys.argv[3]):\n"
        "        ack = send_message(user, int(sys.argv[2]), text)\n"
        "        assert ack['ok'], ack\n"
    )
    env = base_env({**stack.env, "CHAT_RATE_LIMIT": "off"})
    done = subprocess.run([sys.executable, "-c", script, sender, str(conversation_id),
                           json.dumps(texts)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"seeding failed: {done.stderr[-2000:]}"


def seed_messages(stack: BrowserStack, sender: str, conversation_id: int, count: int) -> None:
    """Send ``count`` messages ("seed message 1", ...) through the real send path in a separate
    process (no limit)."""
    seed_texts(stack, sender, conversation_id, [f"seed message {n}" for n in range(1, count + 1)])


def seed_channels(stack, owner: str, channels: list[tuple[str, str, list[str]]]) -> dict:
    """Public channels of ``owner`` (title, description, other members), made in one separate
    process as a script would: their ids by title."""
    script = (
        "import json, sys\n"
        "from sqlalchemy import select\n"
        "from simplechat import create_app\n"
        "from simplechat.extensions import db\n"
        "from simplechat.models import User\n"
        "from simplechat.conversations.channels import create_channel\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    def user(name):\n"
        "        return db.session.scalars(select(User).where(User.username == name)).one()\n"
        "    owner, ids = user(sys.argv[1]), {}\n"
        "    for title, description, members in json.loads(sys.argv[2]):\n"
        "        c, refusal = create_channel(owner, title, description, 'public',\n"
        "                                    limited=False, members=[user(m) for m in members])\n"
        "        assert refusal is None, refusal\n"
        "        ids[title] = c.id\n"
        "    print(json.dumps(ids))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, owner, json.dumps(channels)],
                          cwd=ROOT, env=base_env(stack.env), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"seeding failed: {done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


# axe-core, from npm (tests/browser/package.json and its lock file), for the accessibility checks.
NPM_DIR = Path(__file__).parent
AXE_SCRIPT = NPM_DIR / "node_modules" / "axe-core" / "axe.min.js"
AXE_REPORT = ROOT / "artifacts" / "axe"


def _axe_wanted() -> str:
    return json.loads((NPM_DIR / "package.json").read_text())["devDependencies"]["axe-core"]


def _axe_installed() -> str | None:
    try:
        return json.loads((AXE_SCRIPT.parent / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="session")
def axe_core() -> Path:
    """axe-core's script, installed with `npm ci` from the lock file when it is missing or not
    the pinned version."""
    if _axe_installed() != _axe_wanted():
        npm = shutil.which("npm")
        assert npm, "the accessibility tests need npm (Node 20) to install axe-core"
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=NPM_DIR, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"npm ci: {done.stderr[-2000:]}"
    assert _axe_installed() == _axe_wanted(), "npm ci did not install the pinned axe-core"
    return AXE_SCRIPT


@cache
def _axe_source() -> str:
    assert AXE_SCRIPT.exists(), "use the axe_core fixture, which installs axe-core"
    return AXE_SCRIPT.read_text()


def axe_results(page) -> dict:
    """axe-core run on the page as it is now, with every rule axe runs by default (tags wcag2a,
    wcag2aa, wcag21a, wcag21aa, wcag22aa and best-practice; not the experimental or AAA ones):
    ``violations`` (id, impact, help, nodes), ``passes`` (how many rules passed), ``incomplete``
    (rules axe could not decide, for a person to review) and ``dark`` (the page's scheme).
    Page.evaluate runs outside the page's Content-Security-Policy, so the strict policy stays
    on and the CSP watch keeps working."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(_axe_source())
    # Colours are judged once they settle: a button that just took the focus or a dialog that
    # just opened is still in its CSS transition, and axe would read the colours half-way.
    page.evaluate("""() => Promise.all(document.getAnimations()
        .filter(a => a.effect && a.effect.getComputedTiming().endTime !== Infinity)
        .map(a => a.finished.catch(() => null)))""")
    return page.evaluate("""() => axe.run(document, {resultTypes: ["violations"]}).then(r => ({
        violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => ({target: n.target, summary: n.failureSummary}))})),
        passes: r.passes.length,
        incomplete: r.incomplete.map(v => ({id: v.id,
            nodes: v.nodes.slice(0, 5).map(n => [n.target, n.any.map(c => c.message)])})),
        dark: matchMedia("(prefers-color-scheme: dark)").matches}))""")


def assert_no_axe_violations(page, label: str) -> None:
    """Zero axe-core violations of any impact; ``label`` names the page and state in the report
    (artifacts/axe/report.jsonl) and in the failure message."""
    result = axe_results(page)
    size = page.viewport_size
    where = f"{label} at {size['width']}x{size['height']}, {'dark' if result['dark'] else 'light'}"
    AXE_REPORT.mkdir(parents=True, exist_ok=True)
    with open(AXE_REPORT / "report.jsonl", "a") as report:
        report.write(json.dumps({"state": where, "url": page.url, **result}) + "\n")
    violations = result["violations"]
    assert not violations, f"axe on {where}:\n" + "\n".join(
        f"  [{v['impact']}] {v['id']}: {v['help']}\n" + "\n".join(
            f"      {n['target']}: {(n['summary'] or '').replace(chr(10), ' ')[:300]}"
            for n in v["nodes"][:8])
        for v in violations)
