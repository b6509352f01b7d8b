"""``bench/gpu_check.py --tiny``: every notebook's code path at the ``paper`` architecture (ResNet-18, width 1/8 here)
on an empty and then a warm cache, its work as the cost model planned, and every unit cost measured (on the CPU)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from qlib import cost
from qlib.presets import load_preset

ROOT = Path(__file__).parents[1]


def test_tiny_run_proves_every_code_path_and_prices_every_unit(tmp_path):
    out = tmp_path / "unit_costs.json"
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--tiny", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    seconds = time.perf_counter() - start
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    record = json.loads(out.read_text())
    assert not record["errors"]
    assert all(v["counts as planned"] for k, v in record["part 1"].items() if isinstance(v, dict))
    assert record["part 1"]["loaded on the device"]
    planned = set().union(*cost.plan(load_preset("paper")).values())
    priced = {u for u in planned if not u.startswith("train steps/")}
    assert priced <= set(record["seconds"]), sorted(priced - set(record["seconds"]))
    assert all(s > 0 for s in record["seconds"].values())
    # --tiny's sizes bound it: 57 s alone on 2 cores, about 140 s beside another test worker; a run at the paper's
    # sizes would take hours
    assert seconds < 300, f"--tiny took {seconds:.0f} s (measured 57 s alone on 2 cores, 140 s beside a test worker)"
