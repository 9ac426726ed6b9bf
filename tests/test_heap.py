"""The web process's garbage collector (simplechat/web/heap.py): what wsgi.py sets, what a bad
setting does, and that cycles still die. Each case runs in a fresh interpreter, so that the test
process's own collector is left alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from simplechat.web.heap import thresholds

ROOT = Path(__file__).resolve().parents[1]
REPORT = "import gc; print(gc.get_threshold(), gc.get_freeze_count())"


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("TEST_DATABASE_URL", "TEST_REDIS_URL", "WEB_GC_THRESHOLDS")}
    environment.update(SIMPLECHAT_CONFIG="testing", **env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=120)


def test_the_web_entry_point_freezes_the_startup_and_collects_the_old_generation_less_often():
    result = run_python("import wsgi; " + REPORT)
    assert result.returncode == 0, result.stderr
    threshold, frozen = result.stdout.split(")")
    assert threshold + ")" == "(700, 10, 100)"
    assert int(frozen) > 20_000  # the modules, routes and mappers of the app


def test_an_empty_setting_leaves_python_s_own_collector():
    result = run_python("import wsgi; " + REPORT, WEB_GC_THRESHOLDS="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(700, 10, 10) 0"


def test_a_chosen_setting_is_used():
    result = run_python("import wsgi; " + REPORT, WEB_GC_THRESHOLDS=" 2000, 20 ,50")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("(2000, 20, 50) ")


@pytest.mark.parametrize("setting", ["700,10", "700,10,100,5", "700,ten,100", "0,10,100",
                                     "-1,10,100", "700,,100", "7.5,10,100", "700;10;100"])
def test_a_malformed_setting_is_refused_by_name(setting):
    with pytest.raises(ValueError, match="WEB_GC_THRESHOLDS must be three positive"):
        thresholds(setting)
    result = run_python("import wsgi", WEB_GC_THRESHOLDS=setting)
    assert result.returncode != 0
    assert "WEB_GC_THRESHOLDS must be three positive whole numbers" in result.stderr


def test_cycles_that_die_young_are_still_collected_on_their_own():
    # After settle, garbage cycles made later are freed by the automatic collector (not only
    # by an explicit gc.collect), and frozen objects are not garbage.
    code = """
import gc, weakref
from simplechat.web.heap import settle
settle("700,10,100")
class Node:
    pass
freed = []
for _ in range(5000):
    a, b = Node(), Node()
    a.other, b.other = b, a
    weakref.finalize(a, freed.append, 1)
    del a, b
kept = [[] for _ in range(20000)]  # allocations that live on: young collections run by themselves
print(len(freed), gc.isenabled())
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    count, enabled = result.stdout.split()
    assert enabled == "True"
    assert int(count) >= 4990  # one caught mid-pair by a young collection may wait longer
