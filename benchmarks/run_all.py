"""Simple Chat against the bare Flask-SocketIO baseline, at the same load, in one run.

Starts both servers with gunicorn -k eventlet (one worker each, ports 18500-18599), Redis db 11
under a unique key prefix, a fresh PostgreSQL database and one Celery worker for the full server,
lifts the rate limit (CHAT_RATE_LIMIT=off), runs each scenario against the baseline and then the
full server, and prints full/baseline ratios. Everything listens on 127.0.0.1 only.

    .venv/bin/python benchmarks/run_all.py [--quick] [--img-dir docs/img] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402
from simplechat.loadtest import plot_reports  # noqa: E402

# name: (users, conversations, total msg/s, seconds, max in flight per process, client processes)
# capacity: sockets held open; latency: 1,000 clients in groups of 5 sending 100 msg/s in total;
# latency50: the same in groups of 50 (5,000 deliveries/s); fanout: closed loop, groups of 20,
# as fast as each server acknowledges (64 sends in flight per client process).
SCENARIOS = {
    "capacity": (2000, 40, 2, 5, 0, 2),
    "latency": (1000, 200, 100, 30, 0, 2),
    "latency50": (1000, 20, 100, 30, 0, 2),
    "fanout": (200, 10, 100000, 20, 64, 2),
}
QUICK = {
    "capacity": (200, 4, 2, 3, 0, 1),
    "latency": (100, 20, 20, 5, 0, 1),
    "latency50": (100, 2, 20, 5, 0, 1),
    "fanout": (40, 2, 100000, 5, 16, 1),
}


class Sampler(threading.Thread):
    """Peak RSS of a process while a run goes on."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = harness.rss_kib(pid)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            try:
                self.peak = max(self.peak, harness.rss_kib(self.pid))
            except OSError:  # the worker was replaced; the run's report says what failed
                return


def run_loadtest(url: str, baseline: bool, scenario: tuple, prefix: str, workdir: str,
                 name: str) -> dict:
    users, conversations, rate, duration, inflight, processes = scenario
    out = os.path.join(workdir, f"{name}-{'baseline' if baseline else 'full'}.json")
    argv = [sys.executable, "-m", "simplechat.loadtest", "--url", url, "--users", str(users),
            "--conversations", str(conversations), "--rate", str(rate), "--duration",
            str(duration), "--inflight", str(inflight), "--processes", str(processes),
            "--prefix", prefix, "--json", out, "--drain", "15"]
    if baseline:
        argv.append("--baseline")
    print(f"\n== {name} against the {'baseline' if baseline else 'full server'}", flush=True)
    subprocess.run(argv, cwd=harness.ROOT, check=True, timeout=duration + 240)
    with open(out) as f:
        return json.load(f)


def ratio(full: float | None, base: float | None) -> str:
    if not full or not base:
        return "n/a"
    return f"{full / base:.2f}x"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", nargs="*", choices=list(SCENARIOS), help="scenarios to run")
    parser.add_argument("--img-dir", help="write a latency plot per scenario here")
    parser.add_argument("--out", help="write every report and the ratios as JSON")
    args = parser.parse_args()
    scenarios = QUICK if args.quick else SCENARIOS
    names = args.only or list(scenarios)
    prefix = harness.unique_prefix("runall")
    user_prefix = "lt"
    procs = harness.Processes()
    workdir = tempfile.mkdtemp(prefix="simplechat-bench-")
    print(f"logs and reports in {workdir}; {harness.load_note()}", flush=True)
    results: dict = {"load_before": harness.load_note(), "scenarios": {}}
    try:
        with harness.scratch_database("runall") as database_url:
            env = harness.app_env(database_url, prefix)
            most = max(scenarios[n][0] for n in names)
            subprocess.run([sys.executable, "-m", "simplechat.loadtest", "--prefix", user_prefix,
                            "--seed-users", str(most)], cwd=harness.ROOT, env=env, check=True,
                           timeout=120)
            full_port = harness.free_port()
            full = harness.gunicorn(procs, "wsgi:app", full_port, env,
                                    os.path.join(workdir, "full.log"))
            harness.celery_worker(procs, env, os.path.join(workdir, "celery.log"))
            base_port = harness.free_port(full_port + 1)
            base_env = dict(os.environ, BASELINE_REDIS_URL=harness.REDIS_URL,
                            BASELINE_CHANNEL=prefix + "baseline-socketio")
            base = harness.gunicorn(procs, "benchmarks.baseline_server:app", base_port,
                                    base_env, os.path.join(workdir, "baseline.log"))
            full_url = f"http://127.0.0.1:{full_port}"
            base_url = f"http://127.0.0.1:{base_port}"
            harness.wait_http(full_url + "/auth/login", full)
            harness.wait_http(base_url + "/healthz", base)
            workers = {"full": harness.worker_pid(full), "baseline": harness.worker_pid(base)}
            for name in names:
                entry: dict = {}
                for kind, url in (("baseline", base_url), ("full", full_url)):
                    pid = workers[kind]
                    rss_before = harness.rss_kib(pid)
                    cpu_before = harness.cpu_seconds(pid)
                    sampler = Sampler(pid)
                    sampler.start()
                    try:
                        report = run_loadtest(url, kind == "baseline", scenarios[name],
                                              user_prefix, workdir, name)
                    except subprocess.SubprocessError as exc:
                        print(f"!! {name} against {kind} failed: {exc}", flush=True)
                        results["failed"] = results.get("failed", []) + [f"{name}/{kind}"]
                        break
                    finally:
                        sampler.stopped.set()
                    report["server"] = {
                        "rss_before_kib": rss_before, "rss_peak_kib": sampler.peak,
                        "cpu_seconds": round(harness.cpu_seconds(pid) - cpu_before, 2)}
                    connected = report["clients_connected"] or 1
                    report["server"]["rss_per_socket_kib"] = round(
                        (sampler.peak - rss_before) / connected, 1)
                    entry[kind] = report
                if len(entry) < 2:
                    continue
                results["scenarios"][name] = entry
                if args.img_dir:
                    plot_reports([(k, entry[k]) for k in ("baseline", "full")],
                                 os.path.join(args.img_dir, f"loadtest-{name}.png"))
    finally:
        procs.stop_all()
        harness.drop_redis_keys(prefix)
    results["load_after"] = harness.load_note()
    print_summary(results)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def print_summary(results: dict) -> None:
    print(f"\n{'scenario':<10} {'figure':<24} {'baseline':>12} {'full':>12} {'full/base':>10}")
    for name, entry in results["scenarios"].items():
        b, f = entry["baseline"], entry["full"]
        rows = [
            ("clients connected", b["clients_connected"], f["clients_connected"]),
            ("messages sent", b["messages_sent"], f["messages_sent"]),
            ("deliveries/s", b["deliveries_per_s"], f["deliveries_per_s"]),
            ("deliveries missing", b["deliveries_missing"], f["deliveries_missing"]),
            ("latency p50 ms", b["latency_ms"]["p50"], f["latency_ms"]["p50"]),
            ("latency p95 ms", b["latency_ms"]["p95"], f["latency_ms"]["p95"]),
            ("latency p99 ms", b["latency_ms"]["p99"], f["latency_ms"]["p99"]),
            ("latency max ms", b["latency_ms"]["max"], f["latency_ms"]["max"]),
            ("server CPU s", b["server"]["cpu_seconds"], f["server"]["cpu_seconds"]),
            ("server RSS peak MiB", round(b["server"]["rss_peak_kib"] / 1024, 1),
             round(f["server"]["rss_peak_kib"] / 1024, 1)),
            ("RSS per socket KiB", b["server"]["rss_per_socket_kib"],
             f["server"]["rss_per_socket_kib"]),
        ]
        for label, bv, fv in rows:
            print(f"{name:<10} {label:<24} {bv!s:>12} {fv!s:>12} {ratio(fv, bv):>10}")
        errs = {k: (entry[k]["errors"], entry[k]["refusals"]) for k in entry}
        print(f"{name:<10} errors/refusals          {errs}")
    if results.get("failed"):
        print(f"failed runs: {results['failed']}")
    print(f"\n{results['load_before']} before, {results['load_after']} after")


if __name__ == "__main__":
    time.tzset()
    sys.exit(main())
