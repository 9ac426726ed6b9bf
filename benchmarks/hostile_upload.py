"""What a hostile upload costs everyone else: a scan-bomb JPEG and a large honest PNG uploaded to
one gunicorn-eventlet worker while a bystander polls /healthz. For each phase: the bystander's
latency (p50, p99, max) and how many polls it got through, the upload's answer and time, the
worker's CPU and its RSS (VmRSS from /proc/<pid>/status, sampled every 10 ms: before and peak).
The bystander alone comes first, as the baseline, in the same run.

    .venv/bin/python benchmarks/hostile_upload.py [--seconds 3] [--png-rounds 3]
        [--bomb-scans 20000] [--ref COMMIT]

The bomb is the audit's: a progressive greyscale JPEG of 8192 x 4096 (33.5 million pixels, under
the 40 million limit) whose last AC scan (Ss=1..63, one end-of-band run over every block) is
repeated --bomb-scans times before EOI. The honest PNG is 8000 x 5000 RGB, about 130 KB.
``--ref`` runs the same phases against a checkout of another commit too (e.g. the one before
issue 27's fix), on its own server; there the bomb holds the worker for about a minute unless
--bomb-scans is smaller. Servers listen on 127.0.0.1 only; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import requests  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks import harness  # noqa: E402
from simplechat.tools.loadtest import prepare_full  # noqa: E402

PASSWORD = "load-test-password"


# --------------------------------------------------------------------------- the files


def scan_bomb(repeats: int, size: tuple[int, int] = (8192, 4096)) -> bytes:
    """A progressive greyscale JPEG whose last scan (an AC scan over every block, one
    end-of-band run on an even grey) is repeated ``repeats`` times before EOI."""
    out = io.BytesIO()
    Image.new("L", size, 128).save(out, format="JPEG", progressive=True, quality=85)
    jpeg = out.getvalue()
    start = jpeg.rindex(b"\xff\xda")  # the last SOS: its header, then its data up to EOI
    end = len(jpeg) - 2
    assert jpeg[end:] == b"\xff\xd9"
    return jpeg[:end] + jpeg[start:end] * repeats + jpeg[end:]


def honest_png(size: tuple[int, int] = (8000, 5000)) -> bytes:
    ramp = Image.linear_gradient("L").resize(size)
    picture = Image.merge("RGB", (ramp, ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                                  ramp.transpose(Image.Transpose.FLIP_TOP_BOTTOM)))
    out = io.BytesIO()
    picture.save(out, format="PNG", compress_level=9)
    return out.getvalue()


# --------------------------------------------------------------------------- measuring


class Bystander(threading.Thread):
    """Polls /healthz one request after the other, a short pause between, and keeps each
    poll's (sent at, latency)."""

    def __init__(self, url: str, pause: float):
        super().__init__(daemon=True)
        self.url, self.pause = url, pause
        self.polls: list[tuple[float, float]] = []
        self.failures = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        with requests.Session() as session:
            while not self.stopping.is_set():
                sent = time.monotonic()
                try:
                    ok = session.get(self.url + "/healthz", timeout=300).status_code == 200
                except requests.RequestException:
                    ok = False
                self.polls.append((sent, time.monotonic() - sent))
                self.failures += not ok
                time.sleep(self.pause)

    def between(self, start: float, end: float) -> list[float]:
        """Latencies of the polls sent in [start, end)."""
        return [latency for sent, latency in list(self.polls) if start <= sent < end]


class WorkerSampler(threading.Thread):
    """The worker's peak RSS and its CPU seconds as last seen, every 10 ms (the last reading
    stands if the worker dies)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = harness.rss_kib(pid)
        self.cpu = harness.cpu_seconds(pid)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.peak = max(self.peak, harness.rss_kib(self.pid))
                self.cpu = harness.cpu_seconds(self.pid)
            except (OSError, RuntimeError):
                return  # the worker is gone
            time.sleep(0.01)


@dataclass
class Phase:
    name: str
    latencies: list[float]
    seconds: float
    cpu: float
    rss_before: int
    rss_peak: int
    answers: list[str] = field(default_factory=list)
    worker_lived: bool = True


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def measure(name: str, pid: int, bystander: Bystander, seconds: float,
            uploads: list[Callable[[], str]] | None = None) -> Phase:
    """Run the uploads one after the other (or nothing), at least ``seconds`` long, and what
    the bystander saw meanwhile."""
    sampler = WorkerSampler(pid)
    rss_before, cpu_before = sampler.peak, sampler.cpu
    sampler.start()
    start = time.monotonic()
    answers = [upload() for upload in uploads or []]
    remaining = seconds - (time.monotonic() - start)
    if remaining > 0:
        time.sleep(remaining)
    end = time.monotonic()
    # The polls sent in the window and still waiting are part of it: wait for them.
    while bystander.is_alive() and bystander.polls and bystander.polls[-1][0] < end:
        time.sleep(0.01)
        if time.monotonic() - end > 300:
            break
    sampler.stopping.set()
    sampler.join()
    return Phase(name, bystander.between(start, end), end - start, sampler.cpu - cpu_before,
                 rss_before, sampler.peak, answers, os.path.exists(f"/proc/{pid}"))


def report(phase: Phase) -> None:
    lat = sorted(phase.latencies)
    print(f"  {phase.name}")
    print(f"    bystander: {len(lat)} polls in {phase.seconds:.2f} s, p50 "
          f"{percentile(lat, 50) * 1000:.1f} ms, p99 {percentile(lat, 99) * 1000:.1f} ms, "
          f"max {(lat[-1] if lat else float('nan')) * 1000:.1f} ms")
    print(f"    worker: {phase.cpu:.2f} s CPU, RSS {phase.rss_before / 1024:.0f} MiB before, "
          f"{phase.rss_peak / 1024:.0f} MiB peak")
    for answer in phase.answers:
        print(f"    upload: {answer}")
    if not phase.worker_lived:
        print("    THE WORKER DIED (gunicorn starts another): CPU and RSS as last read")


# --------------------------------------------------------------------------- one server


def poster(base: str, cookie: str, conversation_id: int, name: str, data: bytes,
           content_type: str) -> Callable[[], tuple[int | None, str, str]]:
    """A function that uploads the file once (on a session of its own) and returns the HTTP
    status (None when the request failed), the answer's code ("ok", the error's code, or
    "failed: <exception>") and the answer's text."""
    session = requests.Session()
    session.headers["Cookie"] = cookie
    page = session.get(base + "/chat/", timeout=30).text
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)[1]
    url = f"{base}/api/conversations/{conversation_id}/attachments"

    def post() -> tuple[int | None, str, str]:
        try:
            response = session.post(url, files={"file": (name, data, content_type)},
                                    headers={"X-CSRFToken": token}, timeout=300)
        except requests.RequestException as exc:
            return None, f"failed: {type(exc).__name__}", ""
        try:
            body = response.json()
        except ValueError:
            body = None
        code = (("ok" if body.get("ok") else str(body.get("error", "?")))
                if isinstance(body, dict) else "?")
        return response.status_code, code, response.text

    return post


def uploader(base: str, cookie: str, conversation_id: int, name: str, data: bytes,
             content_type: str):
    post = poster(base, cookie, conversation_id, name, data, content_type)

    def upload() -> str:
        began = time.monotonic()
        status, code, text = post()
        answer = code if status is None else f"{status} {text[:80].strip()}"
        return f"{name}: {answer} ({time.monotonic() - began:.2f} s)"

    return upload


def run_target(label: str, base: str, server, log: str, args, bomb: bytes, png: bytes
               ) -> None:
    tag = secrets.token_hex(3)
    cookies, conversations = asyncio.run(prepare_full(
        base, [f"hu-{tag}-a", f"hu-{tag}-b"], PASSWORD, 1, True, 2))
    cookie, conversation_id = cookies[0], conversations[0]
    bomb_upload = uploader(base, cookie, conversation_id, "bomb.jpg", bomb, "image/jpeg")
    png_upload = uploader(base, cookie, conversation_id, "big.png", png, "image/png")
    print(f"\n== {label} ({base}); before: {harness.load_note()}", flush=True)
    phases = [
        ("bystander alone (baseline)", []),
        (f"scan bomb: 8192x4096 progressive JPEG, {args.bomb_scans} repeated scans, "
         f"{len(bomb) / 1e6:.2f} MB", [bomb_upload]),
        (f"honest PNG: 8000x5000 RGB, {len(png) / 1e3:.0f} KB, x{args.png_rounds}",
         [png_upload] * args.png_rounds),
    ]
    bystander = Bystander(base, args.pause)
    bystander.start()
    try:
        time.sleep(0.5)  # warm: connections, caches
        for name, uploads in phases:
            harness.wait_http(base + "/auth/login", server)
            pid = harness.worker_pid(server)  # a new one if the last phase killed it
            report(measure(name, pid, bystander, args.seconds, uploads))
    finally:
        bystander.stopping.set()
        bystander.join(310)
    if bystander.failures:
        print(f"  bystander: {bystander.failures} polls failed or answered other than 200")
    with open(log, errors="replace") as file:
        timeouts = file.read().count("WORKER TIMEOUT")
    if timeouts:
        print(f"  gunicorn logged WORKER TIMEOUT {timeouts} time(s) (--timeout 120)")
    print(f"  after: {harness.load_note()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="each phase lasts at least this long (default 3)")
    parser.add_argument("--png-rounds", type=int, default=3)
    parser.add_argument("--bomb-scans", type=int, default=20_000)
    parser.add_argument("--pause", type=float, default=0.01,
                        help="seconds between the bystander's polls (default 0.01)")
    parser.add_argument("--ref", help="also measure this commit's server (git ref)")
    args = parser.parse_args()
    bomb, png = scan_bomb(args.bomb_scans), honest_png()
    print(f"files: bomb {len(bomb)} bytes, PNG {len(png)} bytes; {harness.load_note()}")
    prefix = harness.unique_prefix("hostile")
    procs = harness.Processes()
    workdir = tempfile.mkdtemp(prefix="simplechat-hostile-")
    try:
        with harness.scratch_database("hostile") as database_url:
            env = harness.app_env(database_url, prefix, CHAT_UPLOAD_RATE_LIMIT="off",
                                  ATTACHMENT_DIR=os.path.join(workdir, "attachments"))
            targets = [("this tree", harness.ROOT)]
            if args.ref:
                targets.append((f"commit {args.ref}", harness.checkout(
                    args.ref, tempfile.mkdtemp(prefix="simplechat-ref-"))))
            for label, tree in targets:
                port = harness.free_port()
                log = os.path.join(workdir, f"web-{port}.log")
                server = harness.gunicorn(procs, "wsgi:app", port, env, log, cwd=tree)
                base = f"http://127.0.0.1:{port}"
                harness.wait_http(base + "/auth/login", server)
                run_target(label, base, server, log, args, bomb, png)
                procs.stop_all()
    finally:
        procs.stop_all()
        harness.drop_redis_keys(prefix)
    print(f"\nlogs: {workdir}")


if __name__ == "__main__":
    main()
