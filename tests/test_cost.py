"""The cost model (``qlib.cost``): the plan sums the units the notebooks' cells declare, each cell once. That each
``smoke`` cell, computed on an empty cache, counts exactly its declared units where the work happens (``qlib.counters``)
is checked cell by cell in tests/test_executors.py."""

from pathlib import Path

import pytest
from inprocess import run_qlib

from qlib import cost
from qlib.experiments import NOTEBOOKS
from qlib.presets import load_preset

ROOT = Path(__file__).parents[1]


def test_an_entry_is_counted_once_in_the_first_notebook_that_needs_it():
    planned = cost.plan(load_preset("paper"))
    assert list(planned) == list(NOTEBOOKS)
    # notebook 00 trains every seed's clean FP and QAT models; 02 reuses the QAT ones for its clean rows
    assert planned["00_clean_baselines"]["train images/4W"] == 100 * 50_000
    assert planned["02_qat"]["train images/4W"] == 100 * (50_000 + 1_500) * 5  # 5 poisons: LF, TGDA, GC, TGDA-Q, GC-Q
    # gradient matching: 10 targets x 8 seeds x (1 oblivious + 5 aware) poison sets of 250 steps x 8 restarts x 500
    assert planned["05_targeted"]["attack/gradient_matching"] == 10 * 8 * 6 * 250 * 8 * 500


def run_cli(*args):
    return run_qlib("cost", *args)


def test_cli_prints_hours_per_notebook_from_a_gpu_checks_unit_costs():
    out = run_cli("--preset", "paper", "--unit-costs", "bench/results/unit_costs_nvidia_h200.json")
    assert out.returncode == 0, out.stderr
    summary = out.stdout.split("NVIDIA H200")[1]
    for notebook in (*NOTEBOOKS, "all"):
        assert notebook in summary
    serial = float(summary.splitlines()[-1].split()[1])
    parallel = run_cli(
        "--preset", "paper", "--unit-costs", "bench/results/unit_costs_nvidia_h200.json", "--processes", "4"
    )
    assert parallel.returncode == 0 and float(parallel.stdout.splitlines()[-1].split()[1]) < serial


@pytest.mark.parametrize(
    "args, message",
    [
        (["--unit-costs", "nowhere.json"], "cannot be read"),
        (["--unit-costs", "pyproject.toml"], "cannot be read as JSON"),
        (["--unit-costs", "bench/results/unit_costs_nvidia_h200.json", "--processes", "3"], "processes=3"),
        (["--processes", "4"], "--processes needs --unit-costs"),
    ],
)
def test_cli_refuses_bad_input_in_one_line(args, message):
    out = run_cli("--preset", "paper", *args)
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
