"""Lighthouse scores of every page, measured against a real server as `make run` starts it.

    .venv/bin/python benchmarks/lighthouse.py [--runs 3] [--pages chat,login] [--out DIR]

It starts gunicorn (eventlet, one worker) in the embedded default (SQLite in a scratch folder,
no Redis), registers two users, gives them a direct conversation with some messages, then runs
Lighthouse (mobile preset, its default) on each page, logged-in pages with the session cookie
in ``--extra-headers``, and prints the four category scores per page (the median of ``--runs``
runs by performance), the chat page's LCP, and what failed in best practices.

Lighthouse is a measuring tool, not a test dependency: npx fetches the pinned version on first
use (Node 20; Lighthouse 13 wants Node 22). Chromium is the system one (CHROME_PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from e2e.harness import (  # noqa: E402
    BIN,
    Process,
    base_env,
    free_port,
    register,
    wait_until,
)

LIGHTHOUSE = os.environ.get("LIGHTHOUSE", "lighthouse@12.8.2")
CHROME = os.environ.get("CHROME_PATH", "/usr/bin/chromium")
CHROME_FLAGS = "--headless=new --no-sandbox --disable-gpu"
CATEGORIES = ("performance", "accessibility", "best-practices", "seo")
PORTS = range(18900, 18950)


def start_server(workdir: Path, log_dir: Path) -> tuple[Process, str]:
    """`make run`'s gunicorn on a scratch SQLite database; the process and its base URL."""
    env = base_env({
        "DATABASE_URL": f"sqlite:///{workdir / 'simplechat.sqlite3'}",
        "SECRET_KEY": secrets.token_hex(16),
        # Seeding sends a few dozen messages at once; the limit is not what is measured.
        "CHAT_RATE_LIMIT": "1000/1s",
    })
    subprocess.run([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=120)
    port = free_port(PORTS)
    web = Process("web", [str(BIN / "gunicorn"), "-k", "eventlet", "-w", "1",
                          "-b", f"127.0.0.1:{port}", "--timeout", "120", "wsgi:app"],
                  env, log_dir / "web.log")
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        import requests

        try:
            return requests.get(url + "/auth/login", timeout=2).status_code == 200
        except requests.RequestException:
            return not web.alive()

    wait_until(answers, 40, 0.2, "the server to answer")
    if not web.alive():
        raise SystemExit(f"gunicorn exited:\n{web.tail()}")
    return web, url


def seed(url: str) -> tuple[str, dict[str, str]]:
    """Two users and a direct conversation of 30 messages; the first user's cookie and the
    pages to measure (name: path)."""
    ada = register(url, "ada" + secrets.token_hex(3))
    bob = register(url, "bob" + secrets.token_hex(3))
    found = ada.session.get(url + "/api/users", params={"q": bob.username}, timeout=10).json()
    bob_id = found["results"][0]["id"]
    conversation = ada.start_conversation(url, [bob_id])
    sockets = {user: user.socket(url) for user in (ada, bob)}
    for i in range(30):
        user = ada if i % 3 else bob
        ack = sockets[user].send(conversation, f"Message {i + 1}: how is the release going? "
                                 "Everything on track for Friday.", client_id=f"seed-{i}")
        if not ack.get("ok"):
            raise SystemExit(f"seeding failed: {ack}")
    for user in (ada, bob):
        user.close_sockets()
    pages = {
        "login": "/auth/login",
        "register": "/auth/register",
        "chat list": "/chat/",
        "new chat": "/chat/new",
        "chat": f"/chat/{conversation}",
        "profile": "/profile/",
        "sessions": "/profile/sessions",
        "edit profile": "/profile/edit",
        "password": "/profile/password",
        "public profile": f"/profile/{bob.username}",
    }
    return ada.cookie_header, pages


def lighthouse(url: str, report: Path, cookie: str | None, cpu_slowdown: float | None) -> dict:
    """One Lighthouse run; its JSON report (also written to ``report``)."""
    args = ["npx", "-y", LIGHTHOUSE, url, "--quiet", "--output=json",
            f"--output-path={report}", f"--chrome-flags={CHROME_FLAGS}"]
    if cpu_slowdown is not None:
        args.append(f"--throttling.cpuSlowdownMultiplier={cpu_slowdown}")
    if cookie:
        headers = report.with_suffix(".headers.json")
        headers.write_text(json.dumps({"Cookie": cookie}))
        args.append(f"--extra-headers={headers}")
    env = {**os.environ, "CHROME_PATH": CHROME}
    subprocess.run(args, check=True, env=env, timeout=300, stdout=subprocess.DEVNULL)
    return json.loads(report.read_text())


def scores(result: dict) -> dict[str, int]:
    return {c: round((result["categories"][c]["score"] or 0) * 100) for c in CATEGORIES}


def failed_audits(result: dict, category: str) -> list[str]:
    refs = result["categories"][category]["auditRefs"]
    out = []
    for ref in refs:
        audit = result["audits"][ref["id"]]
        if ref.get("weight") and audit.get("score") is not None and audit["score"] < 1:
            out.append(ref["id"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="runs per page (median reported)")
    parser.add_argument("--pages", default="", help="comma-separated page names (default all)")
    parser.add_argument("--cpu-slowdown", type=float, default=None,
                        help="Lighthouse's CPU slowdown (default: the preset's 4x, calibrated for "
                             "a host of benchmark index ~1500; see the index printed)")
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "lighthouse"),
                        help="where the JSON reports go")
    args = parser.parse_args()
    if not shutil.which("npx"):
        raise SystemExit("npx (Node) is needed to run Lighthouse")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="simplechat-lighthouse-") as tmp:
        web, url = start_server(Path(tmp), out)
        try:
            cookie, pages = seed(url)
            wanted = [p.strip() for p in args.pages.split(",") if p.strip()] or list(pages)
            rows = []
            for name in wanted:
                path = pages[name]
                logged_in = not path.startswith("/auth/")
                runs = []
                for run in range(args.runs):
                    report = out / f"{name.replace(' ', '-')}-{run + 1}.json"
                    runs.append(lighthouse(url + path, report, cookie if logged_in else None,
                                           args.cpu_slowdown))
                runs.sort(key=lambda r: scores(r)["performance"])
                median = runs[len(runs) // 2]
                audits = median["audits"]
                lcp = audits["largest-contentful-paint"]["numericValue"] / 1000
                tbt = audits["total-blocking-time"]["numericValue"]
                perf = [scores(r)["performance"] for r in runs]
                indexes = [round(r["environment"]["benchmarkIndex"]) for r in runs]
                rows.append((name, path, scores(median), lcp, tbt, perf, indexes,
                             {c: failed_audits(median, c) for c in CATEGORIES[1:]}))
                print(f"{name}: {scores(median)}", file=sys.stderr, flush=True)
        finally:
            web.stop()
    slowdown = f"CPU slowdown {args.cpu_slowdown:g}x" if args.cpu_slowdown else "preset CPU 4x"
    print(f"\nLighthouse {LIGHTHOUSE}, mobile preset ({slowdown}), {args.runs} run(s) per page\n")
    print("| page | perf | a11y | best practices | SEO | LCP s | TBT ms | perf runs | "
          "host benchmark index |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, path, s, lcp, tbt, perf, indexes, _failed in rows:
        print(f"| {name} `{path}` | {s['performance']} | {s['accessibility']} | "
              f"{s['best-practices']} | {s['seo']} | {lcp:.1f} | {tbt:.0f} | {perf} | "
              f"{indexes} |")
    print()
    print("Failing audits (median run):")
    for name, *_, failed in rows:
        listed = "; ".join(f"{c}: {', '.join(ids)}" for c, ids in failed.items() if ids)
        print(f"- {name}: {listed or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
