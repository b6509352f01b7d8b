"""The cost model (``qlib.cost``) against the work actually done: each ``smoke`` notebook grid, run on an empty cache,
executes exactly the units the model planned, counted where they happen (``qlib.counters``: optimizer steps and
images in ``fit``, images in ``evaluate``, each attack's unit in its loop)."""

import subprocess
import sys
from pathlib import Path

import pytest

from qlib import cost, grids
from qlib.counters import counting
from qlib.data import SOURCES, _find
from qlib.presets import load_preset

ROOT = Path(__file__).parents[1]


@pytest.mark.skipif(_find(SOURCES.get("fashion-mnist"), "train") is None, reason="Fashion-MNIST not installed")
def test_smoke_grids_execute_exactly_the_planned_units(tmp_path, monkeypatch):
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))
    cfg, sweep = load_preset("smoke"), cost.sweep_defaults()
    planned = cost.plan(cfg, sweep)
    for notebook in grids.NOTEBOOKS:
        with counting() as ran:
            grids.GRIDS.get(notebook)(cfg, sweep)
        assert +ran == planned[notebook], notebook
        assert any(u.startswith("train images/") for u in ran) or notebook == "03_ablation", notebook
    with counting() as again:  # the warm cache trains and attacks nothing; only uncached evaluations run again
        for notebook in grids.NOTEBOOKS:
            grids.GRIDS.get(notebook)(cfg, sweep)
    assert set(again) <= {"eval images"}


def test_an_entry_is_counted_once_in_the_first_notebook_that_needs_it():
    planned = cost.plan(load_preset("paper"))
    assert list(planned) == list(grids.NOTEBOOKS)
    # notebook 00 trains every seed's clean FP and QAT models; 02 reuses the QAT ones for its clean rows
    assert planned["00_clean_baselines"]["train images/4W"] == 100 * 50_000
    assert planned["02_qat"]["train images/4W"] == 100 * (50_000 + 1_500) * 5  # 5 poisons: LF, TGDA, GC, TGDA-Q, GC-Q
    # gradient matching: 10 targets x 8 seeds x (1 oblivious + 5 aware) poison sets of 250 steps x 8 restarts x 500
    assert planned["05_targeted"]["attack/gradient_matching"] == 10 * 8 * 6 * 250 * 8 * 500


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "qlib", "cost", *args], cwd=ROOT, capture_output=True, text=True)


def test_cli_prints_hours_per_notebook_from_a_gpu_checks_unit_costs():
    out = run_cli("--preset", "paper", "--unit-costs", "bench/results/unit_costs_nvidia_h200.json")
    assert out.returncode == 0, out.stderr
    summary = out.stdout.split("NVIDIA H200")[1]
    for notebook in (*grids.NOTEBOOKS, "all"):
        assert notebook in summary
    serial = float(summary.splitlines()[-1].split()[1])
    parallel = run_cli("--preset", "paper", "--unit-costs", "bench/results/unit_costs_nvidia_h200.json", "--processes", "4")
    assert parallel.returncode == 0 and float(parallel.stdout.splitlines()[-1].split()[1]) < serial


@pytest.mark.parametrize("args, message", [
    (["--unit-costs", "nowhere.json"], "cannot be read"),
    (["--unit-costs", "pyproject.toml"], "cannot be read as JSON"),
    (["--unit-costs", "bench/results/unit_costs_nvidia_h200.json", "--processes", "3"], "processes=3"),
    (["--processes", "4"], "--processes needs --unit-costs"),
])
def test_cli_refuses_bad_input_in_one_line(args, message):
    out = run_cli("--preset", "paper", *args)
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
