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


def run_loadtest(url: str, kind: str, scenario: tuple, prefix: str, workdir: str,
                 name: str) -> dict:
    baseline = kind == "baseline"
    users, conversations, rate, duration, inflight, processes = scenario
    out = os.path.join(workdir, f"{name}-{kind.replace('@', '-')}.json")
    argv = [sys.executable, "-m", "simplechat.loadtest", "--url", url, "--users", str(users),
            "--conversations", str(conversations), "--rate", str(rate), "--duration",
            str(duration), "--inflight", str(inflight), "--processes", str(processes),
            "--prefix", prefix, "--json", out, "--drain", "15"]
    if baseline:
        argv.append("--baseline")
    print(f"\n== {name} against {kind}", flush=True)
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
    parser.add_argument("--ref", help="also drive the full server as of this git commit "
                                      "(a before/after comparison in the same run)")
    parser.add_argument("--ref-last", action="store_true",
                        help="drive the --ref server after the current one (default: before)")
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
            targets = [("baseline", base_url), ("full", full_url)]
            if args.ref:
                tree = harness.checkout(args.ref, tempfile.mkdtemp(prefix="simplechat-ref-"))
                ref_port = harness.free_port(base_port + 1)
                ref = harness.gunicorn(procs, "wsgi:app", ref_port, env,
                                       os.path.join(workdir, "ref.log"), cwd=tree)
                harness.wait_http(f"http://127.0.0.1:{ref_port}/auth/login", ref)
                kind = f"full@{args.ref}"
                workers[kind] = harness.worker_pid(ref)
                targets.insert(len(targets) if args.ref_last else 1,
                               (kind, f"http://127.0.0.1:{ref_port}"))
            for name in names:
                entry: dict = {}
                for kind, url in targets:
                    pid = workers[kind]
                    rss_before = harness.rss_kib(pid)
                    cpu_before = harness.cpu_seconds(pid)
                    sampler = Sampler(pid)
                    sampler.start()
                    try:
                        report = run_loadtest(url, kind, scenarios[name],
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
                if len(entry) < len(targets):
                    continue
                results["scenarios"][name] = entry
                if args.img_dir:
                    plot_reports(list(entry.items()),
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
    for name, entry in results["scenarios"].items():
        kinds = list(entry)
        print(f"\n{name:<10} {'figure':<22}" + "".join(f"{k:>16}" for k in kinds)
              + "".join(f"{k + '/base':>18}" for k in kinds[1:]))
        rows = [
            ("clients connected", lambda r: r["clients_connected"]),
            ("messages sent", lambda r: r["messages_sent"]),
            ("acks ok", lambda r: r["acks_ok"]),
            ("deliveries/s", lambda r: r["deliveries_per_s"]),
            ("deliveries missing", lambda r: r["deliveries_missing"]),
            ("latency p50 ms", lambda r: r["latency_ms"]["p50"]),
            ("latency p95 ms", lambda r: r["latency_ms"]["p95"]),
            ("latency p99 ms", lambda r: r["latency_ms"]["p99"]),
            ("latency max ms", lambda r: r["latency_ms"]["max"]),
            ("server CPU s", lambda r: r["server"]["cpu_seconds"]),
            ("server RSS peak MiB", lambda r: round(r["server"]["rss_peak_kib"] / 1024, 1)),
            ("RSS per socket KiB", lambda r: r["server"]["rss_per_socket_kib"]),
        ]
        for label, get in rows:
            values = [get(entry[k]) for k in kinds]
            print(f"{name:<10} {label:<22}" + "".join(f"{v!s:>16}" for v in values)
                  + "".join(f"{ratio(v, values[0]):>18}" for v in values[1:]))
        for kind in kinds:
            if entry[kind]["errors"] or entry[kind]["refusals"]:
                print(f"{name:<10} {kind}: errors {entry[kind]['errors']}, "
                      f"refusals {entry[kind]['refusals']}")
    if results.get("failed"):
        print(f"failed runs: {results['failed']}")
    print(f"\n{results['load_before']} before, {results['load_after']} after")


if __name__ == "__main__":
    time.tzset()
    sys.exit(main())
