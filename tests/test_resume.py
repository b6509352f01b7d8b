"""A grid killed part-way (SIGKILL, whenever it is) and run again: it recomputes none of the finished cells, computes
exactly the missing ones, gives the results of an uninterrupted run (same machine: bit-identical), and leaves a cache
whose every entry verifies and holds no scratch files."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qlib import artifacts
from qlib.data import SOURCES, _find

pytestmark = pytest.mark.skipif(
    _find(SOURCES.get("fashion-mnist"), "train") is None, reason="Fashion-MNIST not installed"
)

ROOT = Path(__file__).parents[1]
# Notebook 01 on a small smoke grid: label flip, TGDA and GC poisons, the GradPC target, FP retrains, FP and PTQ
# accuracies and the PAQ readings (28 cells, each a cache entry).
GRID = [
    "01_ptq",
    "--preset",
    "smoke",
    "-p",
    "train_size",
    "600",
    "-p",
    "test_size",
    "200",
    "-p",
    "epochs",
    "2",
    "-p",
    "attacks",
    "{gc: {epochs: 2}}",
    "-p",
    "sweep_attacks",
    "[label_flip]",
    "-p",
    "sweep_eps_d",
    "[0.03]",
]
KILL_AT = 8  # finished entries when the grid is killed; a few more may finish before the signal lands


def grid(cache: Path, timings: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "qlib", "grid", *GRID, "--timings", str(timings)],
        cwd=ROOT,
        env={**os.environ, "QLIB_CACHE": str(cache)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def run_to_the_end(cache: Path, timings: Path) -> dict:
    """Run the grid; return its timings record."""
    proc = grid(cache, timings)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(timings.read_text())


def finished(cache: Path) -> set[str]:
    """The ids (``kind/hash``) of the finished entries: a JSON result, or an artifact's manifest (written last)."""
    return {f"{p.parent.name}/{p.stem}" for p in cache.glob("*/*.json")}


def files(cache: Path) -> dict:
    """Every entry file (relative path) and its content's digest."""
    return {
        str(p.relative_to(cache)): artifacts._sha256(p)
        for p in cache.rglob("*")
        if p.is_file() and ".locks" not in p.parts and not p.name.endswith(".tmp")
    }


def results(cache: Path) -> dict:
    """What every entry holds: an artifact's tensors (their digest) and its metadata; a JSON entry's result."""
    out = {}
    for manifest in cache.glob("*/*.json"):
        entry = f"{manifest.parent.name}/{manifest.stem}"
        if manifest.with_suffix(".safetensors").exists():
            tensors, meta = artifacts.load(manifest.with_suffix(""))  # verifies the checksum
            out[entry] = (
                artifacts.tensor_digest([tensors[k] for k in sorted(tensors)], sorted(tensors)),
                without_times(meta),
            )
        else:
            out[entry] = without_times(json.loads(manifest.read_text())["result"])
    return out


def without_times(value):
    """``value`` without wall times, which differ between two runs of the same computation."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def computed(record: dict) -> set[str]:
    cells = record["cells"]
    assert all(c.get("computed", True) for c in cells), "a cell was computed by another process"
    return {c["id"] for c in cells}


def test_a_killed_grid_resumes_without_recomputing_finished_cells(tmp_path):
    reference_cache, cache = tmp_path / "reference", tmp_path / "cache"
    everything = computed(run_to_the_end(reference_cache, tmp_path / "reference.json"))
    assert everything == finished(reference_cache) and len(everything) > 2 * KILL_AT

    proc = grid(cache, tmp_path / "killed.json")
    try:
        deadline = time.time() + 300
        while proc.poll() is None and len(finished(cache)) < KILL_AT and time.time() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"the grid ended before it was killed: {err[-2000:]}"
    done_before = finished(cache)
    assert KILL_AT <= len(done_before) < len(everything), len(done_before)
    assert not (tmp_path / "killed.json").exists()
    kept = {path: digest for path, digest in files(cache).items() if path.rsplit(".", 1)[0] in done_before}

    resumed = computed(run_to_the_end(cache, tmp_path / "resumed.json"))
    assert not resumed & done_before, f"the rerun recomputed finished entries: {sorted(resumed & done_before)}"
    assert resumed == everything - done_before, "the rerun did not compute exactly the missing cells"
    assert not list(cache.rglob("*.tmp")), "scratch files left in the cache"
    after = files(cache)
    assert {k: after.get(k) for k in kept} == kept, "a finished entry changed"
    assert set(after) == set(files(reference_cache))
    assert results(cache) == results(reference_cache)
