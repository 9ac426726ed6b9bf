"""Simple Chat against the bare Flask-SocketIO baseline, at the same load, in one run.

Starts both servers with gunicorn -k eventlet (one worker each, ports 18500-18599), Redis db 11
under a unique key prefix, a fresh PostgreSQL database and one Celery worker for the full server,
lifts the rate limit (CHAT_RATE_LIMIT=off), runs each scenario against the baseline and then the
full server, and prints full/baseline ratios: per scenario, then against each goal of issue 13
(met or missed). Everything listens on 127.0.0.1 only.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only NAME ...] [--ref COMMIT]
        [--img-dir docs/img] [--out results.json]
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402
from simplechat.tools.loadtest import plot_reports, raise_open_file_limit  # noqa: E402


@dataclass(frozen=True)
class Scenario:
    users: int
    conversations: int  # user i takes part in conversation i mod M
    rate: float  # messages per second in total (open loop), or a ceiling (closed loop)
    duration: float  # seconds of sending
    inflight: int = 0  # closed loop: at most this many unacknowledged sends per client process
    processes: int = 2  # client processes (one asyncio process tops out near 20,000 deliveries/s)
    senders: int = 0  # only the first N clients of each conversation send (0: all)


CLOSED = 100000  # the rate of a closed-loop run: as fast as the server acknowledges

SCENARIOS = {
    # 2,000 and 5,000 sockets held open in groups of 50 at 2 msg/s: connect + join, RSS per socket
    "capacity": Scenario(2000, 40, 2, 5),
    "sockets5000": Scenario(5000, 100, 2, 5, processes=3),
    # connect + join of 50 clients in one conversation, then a trickle of sends
    "connect50": Scenario(50, 1, 2, 3),
    # open loop: 1,000 clients in groups of 5 at 100 msg/s (500 deliveries/s); the same in
    # groups of 50 (5,000 deliveries/s); 50 clients in one conversation at 20 msg/s
    "latency": Scenario(1000, 200, 100, 30),
    "latency50": Scenario(1000, 20, 100, 30),
    "latency20": Scenario(50, 1, 20, 30),
    # closed loop: groups of 20, everyone sending; one conversation of 50 with 10 senders;
    # 100 direct conversations (pairs), one sender each
    "fanout": Scenario(200, 10, CLOSED, 20, inflight=64),
    "fanout50": Scenario(50, 1, CLOSED, 20, inflight=64, processes=3, senders=10),
    "direct": Scenario(200, 100, CLOSED, 20, inflight=64, processes=3, senders=1),
}
QUICK = {
    "capacity": Scenario(200, 4, 2, 3, processes=1),
    "sockets5000": Scenario(500, 10, 2, 3),
    "connect50": Scenario(50, 1, 2, 2),
    "latency": Scenario(100, 20, 20, 5, processes=1),
    "latency50": Scenario(100, 2, 20, 5, processes=1),
    "latency20": Scenario(50, 1, 20, 5),
    "fanout": Scenario(40, 2, CLOSED, 5, inflight=16, processes=1),
    "fanout50": Scenario(50, 1, CLOSED, 5, inflight=16, senders=10),
    "direct": Scenario(40, 20, CLOSED, 5, inflight=16, senders=1),
}


def figure_at(*path: str) -> Callable[[dict], object]:
    """A reader of ``report[path[0]][path[1]]…`` from a run's report, None where it is absent."""
    def read(report: dict) -> object:
        value: object = report
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value
    return read


@dataclass(frozen=True)
class Goal:
    """A ratio to the bare server that issue 13 asks for: at most (or at least) ``goal``, with
    ``floor`` as the worst ratio still acceptable, if any."""
    label: str
    scenario: str
    figure: str
    read: Callable[[dict], object]
    goal: float
    floor: float | None = None
    higher_is_better: bool = False

    def verdict(self, ratio: float) -> str:
        def within(limit: float) -> bool:
            return ratio >= limit if self.higher_is_better else ratio <= limit

        if within(self.goal):
            return "met"
        if self.floor is not None and within(self.floor):
            return "floor met"
        return "missed"

    @property
    def wanted(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        floor = f" (floor {self.floor:g}x)" if self.floor is not None else ""
        return f"{sign} {self.goal:g}x{floor}"


GOALS = [
    Goal("fan-out in a conversation of 50", "fanout50", "deliveries/s",
         figure_at("deliveries_per_s"), 0.9, 0.8, higher_is_better=True),
    Goal("fan-out in a conversation of 50", "fanout50", "worker CPU per delivery",
         figure_at("server", "cpu_per_delivery_us"), 1.1, 1.25),
    Goal("direct conversations, one sender each", "direct", "deliveries/s",
         figure_at("deliveries_per_s"), 0.7, higher_is_better=True),
    Goal("50 clients at 20 msg/s", "latency20", "latency p50", figure_at("latency_ms", "p50"), 1.2),
    Goal("50 clients at 20 msg/s", "latency20", "latency p99", figure_at("latency_ms", "p99"),
         1.25),
    Goal("1,000 clients in groups of 5 at 100 msg/s", "latency", "latency p99",
         figure_at("latency_ms", "p99"), 1.5),
    Goal("connecting and joining 50 clients", "connect50", "connect + join s",
         figure_at("connect_join_seconds"), 2.0),
    Goal("connecting and joining 5,000 sockets", "sockets5000", "connect + join s",
         figure_at("connect_join_seconds"), 2.0),
    Goal("5,000 sockets on one worker", "sockets5000", "RSS per socket",
         figure_at("server", "rss_per_socket_kib"), 1.25),
]


class Sampler(threading.Thread):
    """Peak RSS and CPU time of a process while a run goes on, sampled every 0.1 s."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = harness.rss_kib(pid)
        self.cpu: list[tuple[float, float]] = []  # (CLOCK_MONOTONIC s, CPU s)
        self.stopped = threading.Event()
        self.sample()

    def sample(self) -> None:
        self.cpu.append((time.monotonic(), harness.cpu_seconds(self.pid)))
        self.peak = max(self.peak, harness.rss_kib(self.pid))

    def run(self) -> None:
        while not self.stopped.wait(0.1):
            try:
                self.sample()
            except OSError:  # the worker was replaced; the run's report says what failed
                return

    def cpu_at(self, moment: float) -> float:
        """The process's CPU seconds at a moment, interpolated between samples."""
        after = bisect.bisect_left(self.cpu, (moment,))
        if after == 0:
            return self.cpu[0][1]
        if after == len(self.cpu):
            return self.cpu[-1][1]
        (t0, c0), (t1, c1) = self.cpu[after - 1], self.cpu[after]
        return c0 + (c1 - c0) * (moment - t0) / (t1 - t0) if t1 > t0 else c1


def run_loadtest(url: str, kind: str, scenario: Scenario, prefix: str, workdir: str,
                 name: str, message: list[str] = ()) -> dict:
    out = os.path.join(workdir, f"{name}-{kind.replace('@', '-')}.json")
    drain = 15
    argv = [sys.executable, "-m", "simplechat.tools.loadtest", "--url", url,
            "--users", str(scenario.users), "--conversations", str(scenario.conversations),
            "--senders", str(scenario.senders), "--rate", str(scenario.rate),
            "--duration", str(scenario.duration), "--inflight", str(scenario.inflight),
            "--processes", str(scenario.processes), "--prefix", prefix, "--json", out,
            "--drain", str(drain), *message]
    if kind == "baseline":
        argv.append("--baseline")
    # 0.1 s per user for logins and connects: the full server connected about one socket per
    # 20 ms in a smoke run at load 4.
    timeout = scenario.duration + drain + 240 + scenario.users * 0.1
    subprocess.run(argv, cwd=harness.ROOT, check=True, timeout=timeout)
    with open(out) as f:
        return json.load(f)


def server_figures(sampler: Sampler, rss_before: int, report: dict) -> dict:
    """What the server worker spent on a run: CPU over the whole run and over the send window
    (first send to the end of the drain, so without logins and connects), and memory."""
    clock = report["clock"]
    whole = sampler.cpu[-1][1] - sampler.cpu[0][1]
    sending = None
    if "send_started" in clock and "send_ended" in clock:
        sending = sampler.cpu_at(clock["send_ended"]) - sampler.cpu_at(clock["send_started"])
    deliveries = report["deliveries"]
    sockets = report["clients_connected"] or 1
    return {
        "rss_before_kib": rss_before,
        "rss_peak_kib": sampler.peak,
        "rss_per_socket_kib": round((sampler.peak - rss_before) / sockets, 1),
        "cpu_seconds": round(whole, 2),
        "cpu_send_seconds": None if sending is None else round(sending, 2),
        "cpu_per_delivery_us": (round(sending / deliveries * 1e6, 1)
                                if sending is not None and deliveries else None),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()[:2]]


def ratio(full: object, base: object) -> float | None:
    if not isinstance(full, int | float) or not isinstance(base, int | float) or not base:
        return None
    return full / base


def shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", nargs="*", choices=list(SCENARIOS), help="scenarios to run")
    parser.add_argument("--img-dir", help="write a latency plot per scenario here")
    parser.add_argument("--out", help="write every report, the ratios and the goals as JSON")
    parser.add_argument("--ref", help="also drive the full server as of this git commit "
                                      "(a before/after comparison in the same run)")
    parser.add_argument("--ref-last", action="store_true",
                        help="drive the --ref server after the current one (default: before)")
    parser.add_argument("--also-fanout", choices=["rooms", "broadcast"],
                        help="also drive a second full server with this SOCKETIO_FANOUT "
                             "(issue 17: the room manager's cost in one process)")
    parser.add_argument("--text", help="what each message says (Markdown, to measure "
                                       "formatting), repeated or cut to --size")
    parser.add_argument("--size", type=int, help="characters per message (load tester: 40)")
    args = parser.parse_args()
    message = [*(["--text", args.text] if args.text else []),
               *(["--size", str(args.size)] if args.size else [])]
    if message:
        print(f"messages: {args.text!r}, {args.size or 40} characters", flush=True)
    scenarios = QUICK if args.quick else SCENARIOS
    names = args.only or list(scenarios)
    if args.img_dir:
        os.makedirs(args.img_dir, exist_ok=True)
    prefix = harness.unique_prefix("runall")
    user_prefix = "lt"
    open_files = raise_open_file_limit()  # inherited by the servers and the load-test clients
    procs = harness.Processes()
    workdir = tempfile.mkdtemp(prefix="simplechat-bench-")
    print(f"logs and reports in {workdir}; {harness.load_note()}; open files {open_files}",
          flush=True)
    results: dict = {"load_before": harness.load_note(), "quick": args.quick, "scenarios": {}}
    try:
        with harness.scratch_database("runall") as database_url:
            env = harness.app_env(database_url, prefix)
            most = max(scenarios[n].users for n in names)
            began = time.monotonic()
            subprocess.run([sys.executable, "-m", "simplechat.tools.loadtest",
                            "--prefix", user_prefix, "--seed-users", str(most)],
                           cwd=harness.ROOT, env=env, check=True, timeout=120)
            print(f"seeded {most} users in {time.monotonic() - began:.1f} s", flush=True)
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
            if args.also_fanout:
                other_port = harness.free_port(base_port + 2)
                other = harness.gunicorn(procs, "wsgi:app", other_port,
                                         dict(env, SOCKETIO_FANOUT=args.also_fanout),
                                         os.path.join(workdir, "full-other.log"))
                harness.wait_http(f"http://127.0.0.1:{other_port}/auth/login", other)
                kind = f"full[{args.also_fanout}]"
                workers[kind] = harness.worker_pid(other)
                targets.append((kind, f"http://127.0.0.1:{other_port}"))
            results["targets"] = [kind for kind, _ in targets]
            for name in names:
                entry: dict = {}
                for kind, url in targets:
                    pid = workers[kind]
                    load_before = load_average()
                    print(f"\n== {name} against {kind}: {scenarios[name]}\n"
                          f"   before: {harness.load_note()}", flush=True)
                    rss_before = harness.rss_kib(pid)
                    sampler = Sampler(pid)
                    sampler.start()
                    try:
                        report = run_loadtest(url, kind, scenarios[name],
                                              user_prefix, workdir, name, message)
                    except subprocess.SubprocessError as exc:
                        print(f"!! {name} against {kind} failed: {exc}", flush=True)
                        results["failed"] = results.get("failed", []) + [f"{name}/{kind}"]
                        break
                    finally:
                        sampler.stopped.set()
                        sampler.join()
                    sampler.sample()
                    report["server"] = server_figures(sampler, rss_before, report)
                    report["load"] = {"before": load_before, "after": load_average()}
                    print(f"   after: {harness.load_note()}", flush=True)
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
    results["goals"] = goals(results)
    print_goals(results)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


ROWS = [
    ("clients connected", figure_at("clients_connected")),
    ("clients sending", figure_at("senders")),
    ("connect + join s", figure_at("connect_join_seconds")),
    ("messages sent", figure_at("messages_sent")),
    ("acks ok", figure_at("acks_ok")),
    ("deliveries/s", figure_at("deliveries_per_s")),
    ("deliveries missing", figure_at("deliveries_missing")),
    ("deliveries duplicate", figure_at("deliveries_duplicate")),
    ("latency p50 ms", figure_at("latency_ms", "p50")),
    ("latency p95 ms", figure_at("latency_ms", "p95")),
    ("latency p99 ms", figure_at("latency_ms", "p99")),
    ("latency max ms", figure_at("latency_ms", "max")),
    ("worker CPU s, run", figure_at("server", "cpu_seconds")),
    ("worker CPU s, sending", figure_at("server", "cpu_send_seconds")),
    ("CPU per delivery us", figure_at("server", "cpu_per_delivery_us")),
    ("worker RSS peak MiB", lambda r: round(r["server"]["rss_peak_kib"] / 1024, 1)),
    ("RSS per socket KiB", figure_at("server", "rss_per_socket_kib")),
]


def print_summary(results: dict) -> None:
    """One table per scenario: each target's figures and their ratios to the baseline (and,
    with --ref, the current server's to the older one's)."""
    for name, entry in results["scenarios"].items():
        kinds = list(entry)
        refs = [k for k in kinds if k.startswith(("full@", "full["))]
        pairs = [(k, "baseline") for k in kinds[1:]] + [("full", ref) for ref in refs]
        print(f"\n{name:<12} {'figure':<22}" + "".join(f"{k:>16}" for k in kinds)
              + "".join(f"{a + '/' + b.replace('baseline', 'base'):>22}" for a, b in pairs))
        for label, get in ROWS:
            values = {k: get(entry[k]) for k in kinds}
            print(f"{name:<12} {label:<22}" + "".join(f"{values[k]!s:>16}" for k in kinds)
                  + "".join(f"{shown(ratio(values[a], values[b])):>22}" for a, b in pairs))
        loads = [f"{entry[k]['load']['before'][0]:g}→{entry[k]['load']['after'][0]:g}"
                 for k in kinds]
        print(f"{name:<12} {'load 1 min before→after':<22}" + "".join(f"{x:>16}" for x in loads))
        for kind in kinds:
            if entry[kind]["errors"] or entry[kind]["refusals"]:
                print(f"{name:<12} {kind}: errors {entry[kind]['errors']}, "
                      f"refusals {entry[kind]['refusals']}")
    if results.get("failed"):
        print(f"failed runs: {results['failed']}")
    print(f"\n{results['load_before']} before, {results['load_after']} after")


def goals(results: dict) -> list[dict]:
    """Each goal of issue 13 for every server that is not the baseline: the ratio measured in
    this run and whether it meets the goal; then deliveries lost and duplicated over all runs."""
    projects = [k for k in results.get("targets", []) if k != "baseline"]
    rows = []
    for goal in GOALS:
        entry = results["scenarios"].get(goal.scenario)
        row = {"goal": goal.label, "scenario": goal.scenario, "figure": goal.figure,
               "wanted": goal.wanted, "targets": {}}
        for kind in projects:
            found = ratio(goal.read(entry[kind]), goal.read(entry["baseline"])) if entry else None
            row["targets"][kind] = {
                "ratio": found,
                "verdict": "not run" if entry is None else
                           "n/a" if found is None else goal.verdict(found)}
        rows.append(row)
    for label, figure in (("nothing lost", "deliveries_missing"),
                          ("nothing duplicated", "deliveries_duplicate")):
        row = {"goal": label, "scenario": "all", "figure": figure.replace("_", " "),
               "wanted": "0", "targets": {}}
        for kind in projects:
            counts = [entry[kind][figure] for entry in results["scenarios"].values()]
            row["targets"][kind] = {"count": sum(counts),
                                    "verdict": "not run" if not counts else
                                               "met" if sum(counts) == 0 else "missed"}
        rows.append(row)
    return rows


def print_goals(results: dict) -> None:
    rows = results["goals"]
    if not rows or not results["scenarios"]:
        return
    kinds = list(rows[0]["targets"])
    if results["quick"]:
        print("\n--quick: the scenarios ran at smoke-test sizes, not at the loads the goals name")
    print(f"\n{'goal (ratio to the bare server, same run)':<52} {'figure':<24} {'wanted':<22}"
          + "".join(f"{k:>24}" for k in kinds))
    for row in rows:
        cells = ""
        for kind in kinds:
            cell = row["targets"][kind]
            if "count" in cell:
                figure = str(cell["count"])
            else:
                figure = "" if cell["ratio"] is None else f"{cell['ratio']:.2f}x"
            cells += f"{figure + ' ' + cell['verdict']:>24}"
        print(f"{row['goal'] + ' (' + row['scenario'] + ')':<52} {row['figure']:<24} "
              f"{row['wanted']:<22}" + cells)

if __name__ == "__main__":
    time.tzset()
    sys.exit(main())
