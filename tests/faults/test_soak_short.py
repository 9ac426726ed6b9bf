"""A short soak (benchmarks/soak.py): 30 clients over two web processes for 20 s of steady
sending; no errors, nothing lost, every message delivered once to every member."""

from __future__ import annotations

import importlib.util
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from e2e.harness import ROOT

pytestmark = pytest.mark.e2e


def _soak_module():
    spec = importlib.util.spec_from_file_location("soak", ROOT / "benchmarks" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_short_soak_has_no_errors_no_loss_and_no_duplicates(tmp_path):
    soak = _soak_module()
    # In a thread of its own: the soak runs its own asyncio loop, and browser tests earlier in
    # the same session leave one installed on the main thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        figures = pool.submit(soak.run, clients=30, webs=2, duration=20, interval=4, group=10,
                              ports=range(18600, 18700), progress=False,
                              log_dir=tmp_path).result()
    print(f"\n[soak-short] {figures}")
    assert figures["connected"] == 30
    assert figures["acknowledged"] >= 30 * 4  # about one send per client every 4 s
    assert figures["errors"] == 0, figures["error_kinds"]
    assert figures["lost"] == 0
    assert figures["missed_deliveries"] == 0
    assert figures["duplicate_deliveries"] == 0
    assert figures["servers_alive"]
