"""A grid killed after k cells and run again: it recomputes none of the finished cells, finishes the rest, gives the
results of an uninterrupted run (same machine: bit-identical), and leaves a cache whose every entry verifies."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from qlib import artifacts
from qlib.data import SOURCES, _find

pytestmark = pytest.mark.skipif(_find(SOURCES.get("fashion-mnist"), "train") is None, reason="Fashion-MNIST not installed")

ROOT = Path(__file__).parents[1]
GRID = """
from qlib import study
from qlib.presets import load_preset
from qlib.quant import parse_scheme
CELLS = [("fp", parse_scheme("fp")), ("ptq", parse_scheme("8W")), ("qat", parse_scheme("4W"))]
def grid():
    cfg = load_preset("smoke", train_size=300, test_size=200, gc_epochs=2)
    return study.attack_drops(cfg, ["label_flip", "gc"], [0.03], CELLS, progress=False)
"""
namespace = {}
exec(GRID, namespace)
KILL_AFTER = 3  # of the 6 cells: label flip's three are in the cache, GC's three are not
SAME = ["attack", "regime", "scheme", "seed", "eps_d", "clean_acc", "acc", "drop", "objective_initial", "objective_final"]


def entries(cache: Path) -> dict:
    """Every cache entry (relative path) and its content's digest; scratch files are an error."""
    assert not list(cache.rglob("*.tmp")), "scratch files left in the cache"
    return {str(p.relative_to(cache)): artifacts._sha256(p) for p in cache.rglob("*") if p.is_file() and ".locks" not in p.parts}


def verify(cache: Path) -> None:
    for manifest in cache.rglob("*.json"):
        if manifest.with_suffix(".safetensors").exists():
            artifacts.load(manifest.with_suffix(""))
        else:
            json.loads(manifest.read_text())["result"]


def test_a_killed_grid_resumes_without_recomputing_finished_cells(tmp_path, monkeypatch):
    reference_cache, cache = tmp_path / "reference", tmp_path / "cache"
    monkeypatch.setenv("QLIB_CACHE", str(reference_cache))
    reference = namespace["grid"]()

    killed = subprocess.run([sys.executable, "-c", GRID + "grid()"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "QLIB_CACHE": str(cache), "QLIB_TEST_KILL_AFTER_CELLS": str(KILL_AFTER)})
    assert killed.returncode == -9, killed.stderr[-2000:]
    finished = entries(cache)
    assert len(list((cache / "accuracy").glob("*.json"))) == 2 * KILL_AFTER  # the clean and the poisoned model per cell

    written = []
    for module, name in ((artifacts, "save"), (artifacts, "write_json")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda path, *a, original=original: written.append(Path(path)) or original(path, *a))
    monkeypatch.setenv("QLIB_CACHE", str(cache))
    resumed = namespace["grid"]()

    stems = lambda paths: {str(Path(p).relative_to(cache)).removesuffix(".safetensors").removesuffix(".json") for p in paths}
    rewritten = stems(written) & stems(cache / k for k in finished)
    assert not rewritten, f"the rerun recomputed finished entries: {sorted(rewritten)}"
    new_accuracies = [p for p in written if p.parent.name == "accuracy"]
    assert len(new_accuracies) == 6 - KILL_AFTER  # GC's three poisoned models; their clean models were finished
    assert set(entries(cache)) == set(entries(reference_cache))
    verify(cache)
    after = entries(cache)
    assert {k: after[k] for k in finished} == finished, "a finished entry changed"
    pd.testing.assert_frame_equal(resumed[SAME], reference[SAME])
