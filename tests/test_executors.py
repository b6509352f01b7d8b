"""The executors (``qlib.executors``): every notebook's smoke cells computed one by one in graph order (each writes
exactly its own entry and counts exactly its declared units), then under ``local`` and ``ray`` with the same numbers;
a worker killed mid-cell; two runs of one grid at once; threads pinned per cell."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from safetensors.torch import load_file

from qlib import cache, executors, pipeline
from qlib.cells import cell
from qlib.counters import counting
from qlib.experiments import NOTEBOOKS, stages
from qlib.pipeline import Cell
from qlib.presets import load_preset

ROOT = Path(__file__).resolve().parents[1]


def entries(root: Path) -> set[str]:
    """The finished entries under a cache root, as cell ids."""
    return {f"{p.parent.name}/{p.name.split('.')[0]}" for p in root.glob("*/*.json")}


def readings(root: Path) -> dict:
    """Every entry's numbers: JSON results without wall times, and tensors."""

    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != "seconds"}
        return [strip(x) for x in v] if isinstance(v, list) else v

    out = {}
    for p in sorted(root.glob("*/*.json")):
        meta = json.loads(p.read_text())
        out[f"{p.parent.name}/{p.stem}"] = strip(meta.get("result"))
        tensors = p.with_suffix(".safetensors")
        if tensors.exists():
            out[f"{p.parent.name}/{p.stem} tensors"] = {k: v.tolist() for k, v in load_file(tensors).items()}
    return out


@pytest.fixture(scope="module")
def serial_cache(tmp_path_factory, worker_id):
    """Every notebook's smoke cells on an empty cache, one by one in graph order, each checked: it writes its own entry
    and no other (so every key a cell reads comes from a cell before it) and counts exactly the units it declares
    (what ``qlib.cost`` plans). Returns (cache root, the problems found). Computed once per test run, the first
    pytest-xdist worker to take the lock computing it: in ``$QLIB_SMOKE_CACHE`` (``make test`` empties it first, and
    nbval's notebooks then render from it), else in the run's base temporary folder."""
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # xdist: the run's folder, above each worker's own
    root = Path(os.environ.get("QLIB_SMOKE_CACHE") or shared / "serial-cache")
    root.parent.mkdir(parents=True, exist_ok=True)
    record = root.with_name(root.name + ".json")
    with FileLock(root.with_name(root.name + ".lock")):
        if not record.exists():
            record.write_text(json.dumps(_compute_serially(root)))
    return root, json.loads(record.read_text())


def _compute_serially(root: Path) -> list[str]:
    root.mkdir()  # an existing folder would hide what each cell writes: refused
    old = os.environ.get("QLIB_CACHE")
    os.environ["QLIB_CACHE"] = str(root)
    problems, cfg = [], load_preset("smoke")
    try:
        for notebook in NOTEBOOKS:
            for stage in stages(notebook, cfg):  # a stage may read the cells of the stages before it
                for c in pipeline.pending(stage.declare()):
                    before = entries(root)
                    with counting() as ran:
                        record = pipeline.run(c, threads=1)
                    if entries(root) - before != {c.id} or not record["computed"]:
                        problems.append(f"{c} wrote {entries(root) - before}")
                    if +ran != +c.units:
                        problems.append(f"{c} counted {dict(+ran)}, declared {dict(+c.units)}")
            if pipeline.pending([c for stage in stages(notebook, cfg) for c in stage.declare()]):
                problems.append(f"{notebook}: cells still pending after all were computed")
    finally:
        os.environ.pop("QLIB_CACHE") if old is None else os.environ.__setitem__("QLIB_CACHE", old)
    return problems


def test_each_cell_computes_its_own_entry_and_its_declared_units(serial_cache):
    root, problems = serial_cache
    assert not problems, "\n".join(problems)
    assert len(entries(root)) > 200


def grid(executor: str, cache_root: Path, *notebooks: str, timings: Path | None = None, **popen) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "qlib",
        "grid",
        *(notebooks or ["all"]),
        "--preset",
        "smoke",
        "--executor",
        executor,
    ]
    return subprocess.Popen(
        command + (["--timings", str(timings)] if timings else []),
        cwd=ROOT,
        env={**os.environ, "QLIB_CACHE": str(cache_root)},
        **popen,
    )


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_every_executor_gives_the_serial_numbers(executor, request, tmp_path):
    """``python -m qlib grid all --preset smoke`` under ``local`` (2 workers × 1 thread) and ``ray`` (a local Ray
    runtime, 2 CPUs) computes the same entries with the same numbers, bit for bit, as the serial run on this machine.
    The serial cache is asked for once the grid has run, so that another worker can compute it meanwhile."""
    assert grid(executor, tmp_path).wait(timeout=600) == 0
    ours, serial = readings(tmp_path), readings(request.getfixturevalue("serial_cache")[0])
    assert ours.keys() == serial.keys()
    assert [k for k in serial if ours[k] != serial[k]] == []


# -- toy cells: each computation is logged; the killer dies the first time it runs ---------------------------------


def _toy(c: Cell):
    def compute():
        with open(c.args["log"], "a") as log:
            log.write(f"{c.key['name']} start\n")
        if c.args.get("kill") and not Path(c.args["kill"]).exists():
            Path(c.args["kill"]).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        with open(c.args["log"], "a") as log:
            log.write(f"{c.key['name']} done\n")
        return {"threads": torch.get_num_threads()}

    return cache.cached_result(c.kind, c.key, compute)


def toys(tmp_path: Path) -> list[Cell]:
    """a, b → c (killed the first time) → d: while c runs, no other cell does."""
    log, kill = str(tmp_path / "log"), str(tmp_path / "killed")
    make = lambda name, *inputs, **args: Cell(
        "toy", {"name": name, "where": str(tmp_path)}, _toy, {"log": log, **args}, inputs
    )
    a, b = make("a"), make("b")
    c = make("c", a, b, kill=kill)
    return [make("d", c)]


@pytest.fixture
def ray_by_value():
    """Ray workers cannot import this test module: send its functions by value."""
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_worker_killed_mid_cell_has_that_cell_and_nothing_else_recomputed(executor, tmp_path, monkeypatch, request):
    if executor == "ray":
        request.getfixturevalue("ray_by_value")
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))
    result = executors.compute(toys(tmp_path), executor, threads=1, workers=2, progress=False)
    log = [line.split() for line in (tmp_path / "log").read_text().splitlines()]
    starts = {n: log.count([n, "start"]) for n in "abcd"}
    done = [n for n, what in log if what == "done"]
    assert starts == {"a": 1, "b": 1, "c": 2, "d": 1}  # c killed once, started again; nothing else ran twice
    assert sorted(done) == ["a", "b", "c", "d"] and result["cells"] == 4


@pytest.mark.parametrize("executor", ["serial", "local", "ray"])
def test_every_executor_pins_the_threads_of_a_cell(executor, tmp_path, monkeypatch, request):
    if executor == "ray":
        request.getfixturevalue("ray_by_value")
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "killed").touch()  # no kill here
    before = torch.get_num_threads()
    executors.compute(toys(tmp_path), executor, threads=1, workers=1, progress=False)
    assert {json.loads(p.read_text())["result"]["threads"] for p in (tmp_path / "cache" / "toy").glob("*.json")} == {1}
    assert torch.get_num_threads() == before


def test_two_runs_of_one_grid_at_once_compute_each_cell_once(tmp_path):
    """``serial`` and ``local`` on one cache at the same time: every cell is computed by exactly one of them (the
    other waits for its entry's lock and loads it)."""
    runs = [grid(ex, tmp_path / "cache", "03_ablation", timings=tmp_path / f"{ex}.json") for ex in ("serial", "local")]
    assert [r.wait(timeout=600) for r in runs] == [0, 0]
    computed = {}
    for ex in ("serial", "local"):
        for c in json.loads((tmp_path / f"{ex}.json").read_text())["cells"]:
            computed.setdefault(c["id"], []).append(c["computed"])
    assert computed and all(sum(flags) == 1 for flags in computed.values()), computed
    assert set(computed) == entries(tmp_path / "cache")


def test_the_cell_helper_adds_the_kinds_code_version():
    c = cell("accuracy", {"x": 1}, _toy, {})
    assert c.key == {"x": 1, "code": 2}
