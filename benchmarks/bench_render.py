"""What formatting and mention resolution add to a send, per message: the server's rendering of
``html`` (markdown-it-py + linkify, then nh3) and resolving ``@username`` (the process's name
map, warm), in microseconds, p50 and p99, for short and 4,000-character messages.

CPU only, in this process, on the embedded default (SQLite in memory): the members a mention
needs come from the membership cache, one Redis round trip that is counted by
tests/test_hot_path.py, not timed here.

    .venv/bin/python benchmarks/bench_render.py [--runs 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SHORT = {
    "plain, short": "see you at noon, bring the slides",
    "formatted, short": "see **this** and `code` at https://example.com/a?b=1",
    "mention, short": "@bob can you look at _this_ one?",
}
_PARAGRAPH = ("Some *emphasis*, a `code span`, a link to https://example.com/page and a "
              "mention of @bob in the middle of a longer line of text. ")


def long_messages() -> dict[str, str]:
    plain = ("All plain words without any markup at all, as people mostly type them. " * 60)
    formatted = (_PARAGRAPH * 12 + "\n\n```python\n" + "print('hello world')\n" * 40
                 + "```\n\n> a quote\n\n- one\n- two\n\n" + _PARAGRAPH * 12)
    return {"plain, 4000 chars": plain[:4000], "formatted, 4000 chars": formatted[:4000]}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def measure(fn, runs: int) -> list[float]:
    for _ in range(min(100, runs)):
        fn()  # warm: the parser is built once, the name map fills
    out = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - start) / 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()

    from simplechat import create_app
    from simplechat.extensions import db
    from simplechat.messaging.formatting import render_html
    from simplechat.messaging.mentions import resolve_mentions
    from simplechat.models import User

    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": "sqlite://", "REDIS_URL": None})
    with app.app_context():
        db.create_all()
        for name in ("ada", "bob"):
            db.session.add(User(username=name, first_name=name, last_name="", password_hash="-",
                                email=f"{name}@example.com"))
        db.session.commit()
        members = [1, 2]
        print(f"{'message':24} {'chars':>5} {'render p50':>11} {'p99':>8} "
              f"{'mentions p50':>13} {'p99':>8} {'both p50':>9} {'p99':>8}   (µs)")
        for label, text in {**SHORT, **long_messages()}.items():
            def mentions(text=text):
                return resolve_mentions(text, 1, 1, lambda: members)

            names = mentions()[1]
            render = measure(lambda text=text, names=names: render_html(text, names), args.runs)
            resolve = measure(mentions, args.runs)
            both = measure(lambda text=text: render_html(text, mentions(text)[1]), args.runs)
            print(f"{label:24} {len(text):5} {statistics.median(render):11.1f} "
                  f"{percentile(render, 0.99):8.1f} {statistics.median(resolve):13.1f} "
                  f"{percentile(resolve, 0.99):8.1f} {statistics.median(both):9.1f} "
                  f"{percentile(both, 0.99):8.1f}")


if __name__ == "__main__":
    main()
