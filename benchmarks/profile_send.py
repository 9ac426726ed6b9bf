"""Profile the send path under load: py-spy samples the gunicorn worker of the full server while
the load test saturates it; prints where the worker's time goes (inclusive share per frame).

    .venv/bin/python benchmarks/profile_send.py [--seconds 15] [--stacks out.txt]
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402


def summarise(stacks_path: str, top: int) -> None:
    inclusive: collections.Counter = collections.Counter()
    total = 0
    with open(stacks_path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            seen = set()
            for frame in stack.split(";"):
                name = frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0].replace(
                    harness.ROOT + "/", "") if " (" in frame else frame
                if name not in seen:
                    seen.add(name)
                    inclusive[name] += n
    print(f"\n{total} samples; inclusive share of the worker's busy samples:")
    for name, n in inclusive.most_common(top):
        print(f"{100 * n / total:6.1f}%  {name}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--conversations", type=int, default=2)
    parser.add_argument("--stacks", help="keep the collapsed stacks here")
    parser.add_argument("--top", type=int, default=45)
    args = parser.parse_args()
    prefix = harness.unique_prefix("profile")
    procs = harness.Processes()
    workdir = tempfile.mkdtemp(prefix="simplechat-profile-")
    stacks = args.stacks or os.path.join(workdir, "stacks.txt")
    print(f"logs in {workdir}; {harness.load_note()}")
    try:
        with harness.scratch_database("profile") as database_url:
            env = harness.app_env(database_url, prefix)
            subprocess.run([sys.executable, "-m", "simplechat.tools.loadtest", "--prefix", "pf",
                            "--seed-users", str(args.users)], cwd=harness.ROOT, env=env,
                           check=True, timeout=120)
            port = harness.free_port()
            server = harness.gunicorn(procs, "wsgi:app", port, env,
                                      os.path.join(workdir, "full.log"))
            harness.celery_worker(procs, env, os.path.join(workdir, "celery.log"))
            url = f"http://127.0.0.1:{port}"
            harness.wait_http(url + "/auth/login", server)
            pid = harness.worker_pid(server)
            load = subprocess.Popen([
                sys.executable, "-m", "simplechat.tools.loadtest", "--url", url, "--users",
                str(args.users), "--conversations", str(args.conversations), "--rate", "5000",
                "--inflight", "32", "--duration", str(args.seconds + 8), "--prefix", "pf",
                "--no-progress"], cwd=harness.ROOT)
            # Sample the steady state: after logins and connects, before the drain.
            subprocess.run(["sh", "-c", f"sleep 6 && exec {harness.BIN}/py-spy record "
                            f"--pid {pid} --duration {args.seconds} --rate 200 --format raw "
                            f"--nonblocking --output {stacks}"],
                           check=True, timeout=args.seconds + 60)
            load.wait(timeout=args.seconds + 120)
    finally:
        procs.stop_all()
        harness.drop_redis_keys(prefix)
    summarise(stacks, args.top)
    print(f"\ncollapsed stacks: {stacks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
