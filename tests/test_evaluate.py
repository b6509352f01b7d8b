"""``python -m qlib evaluate`` and notebook 07's module: a qlib GC poison exported to .npz and evaluated on an empty
cache gives exactly the drops of the notebooks' row for that poison (same machine: bit-identical training), a
targeted file gets success and misclassification rates, ``--pixels uint8`` reports whether the poison survives,
and bad input is refused before anything runs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from inprocess import run_qlib

from qlib.data import SOURCES, _find

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.skipif(
    _find(SOURCES.get("fashion-mnist"), "train") is None, reason="Fashion-MNIST not installed"
)


def qlib(*args, cache: Path, cwd: Path = ROOT):
    return run_qlib(*args, env={"QLIB_CACHE": str(cache)}, cwd=cwd)


def test_an_exported_gc_poison_gives_the_notebooks_drops_on_an_empty_cache(tmp_path, monkeypatch):
    from qlib.cells import load_data, poison
    from qlib.experiments import attack_grid, ensure
    from qlib.experiments.ptq import SETTINGS
    from qlib.presets import load_preset

    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "notebooks-cache"))
    cfg = load_preset("smoke")
    entries = attack_grid.entries(cfg, ["gc"], [cfg.eps_d], SETTINGS)  # notebook 01's Table 1 rows of GC
    ensure([c for _, cells in entries for c in cells.values()], progress=False)
    rows = attack_grid.rows(entries).set_index(["regime", "scheme"])
    train, test = load_data(cfg)
    path = poison(cfg, "gc", 0, cfg.eps_d).value()[0].save_npz(tmp_path / "gc.npz", train, test)

    fresh = tmp_path / "empty-cache"
    out = qlib(
        "evaluate",
        str(path),
        "--preset",
        "smoke",
        "--schemes",
        "fp",
        "1W",
        "4W",
        "8W",
        "--regimes",
        "fp",
        "ptq",
        "--out",
        str(tmp_path / "gc.csv"),
        cache=fresh,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "numpy .npz; 30 poisons, appended" in out.stdout and "30 of 30 source images inside" in out.stdout
    got = pd.read_csv(tmp_path / "gc.csv").set_index(["regime", "scheme"])
    assert len(got) == len(rows) == 4
    for key, row in rows.iterrows():
        assert got.loc[key, "drop"] == row["drop"], key  # bit-identical training, so exactly equal
        assert got.loc[key, "clean_acc"] == row["clean_acc"] and got.loc[key, "acc"] == row["acc"]
    assert (fresh / "trained").is_dir()  # computed on the empty cache, not read from the first one


def test_a_targeted_file_gets_rates_and_uint8_reports_survival(tmp_path, monkeypatch):
    from qlib.experiments import evaluate
    from qlib.presets import load_preset

    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    path = tmp_path / "targeted.npz"
    np.savez(
        path,
        x=rng.random((20, 28, 28, 1)).astype(np.float32),
        y=np.full(20, 3),
        target_index=np.array(5),
        adversarial_class=np.array(3),
    )
    cfg = load_preset("smoke", seeds=[0, 1])
    result = evaluate.run(cfg, str(path), ["fp", "4W"], ["fp", "qat"], "uint8", progress=False)
    runs = result["runs"]
    assert set(runs.pixels) == {"float", "uint8"} and len(runs) == 2 * 2 * 2
    assert result["target"][0] == 5 and result["target"][2] == 3
    rates = evaluate.rates(result)
    assert rates.loc[("fp", "fp", "float", "poisoned"), "success"].endswith("]") and "/2 = " in rates.iloc[0]["success"]
    survival = evaluate.survival(result)
    assert list(survival.index) == [("fp", "fp"), ("qat", "4W")]
    assert "Target success per setting" in evaluate.headline(cfg, result)
    table = evaluate.table(result)
    assert table.index.nlevels == 3 and (table["seeds"] == 2).all()


def test_a_replace_mode_poison_inside_the_subset_replaces_and_one_outside_is_refused(tmp_path, monkeypatch):
    from qlib.cells import load_data
    from qlib.experiments import evaluate
    from qlib.presets import load_preset

    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))
    cfg = load_preset("smoke")
    train, _ = load_data(cfg)
    inside = train.origin[:50].numpy()
    x = train.x[:50].numpy().transpose(0, 2, 3, 1)
    path = tmp_path / "replace.npz"
    np.savez(
        path, x=(x * 255).round().astype(np.uint8), y=train.y[:50].numpy(), indices=inside, mode=np.array("replace")
    )
    result = evaluate.run(cfg, str(path), ["fp"], ["fp"], progress=False)
    assert result["poison"].provenance["mode"] == "replace" and len(result["runs"]) == 1
    outside = np.setdiff1d(np.arange(60000), train.origin.numpy())[:50]
    np.savez(
        path, x=(x * 255).round().astype(np.uint8), y=train.y[:50].numpy(), indices=outside, mode=np.array("replace")
    )
    out = qlib("evaluate", str(path), "--preset", "smoke", cache=tmp_path / "cache")
    assert (
        out.returncode == 2 and "50 of 50 source images lie outside" in out.stderr and "--train-size all" in out.stderr
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--schemes", "3X"], "scheme '3X': unknown task '3X'"),
        (["--schemes", "fp", "--regimes", "qat"], "make no setting"),
        (["--train-size", "lots"], "--train-size 'lots': allowed is a positive integer or 'all'"),
        (["--out", "x.json"], "allowed is a file name ending in .csv"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(tmp_path, args, message):
    np.savez(tmp_path / "p.npz", x=np.zeros((3, 1, 28, 28), np.float32), y=np.zeros(3, np.int64))
    out = qlib("evaluate", str(tmp_path / "p.npz"), "--preset", "smoke", *args, cache=tmp_path / "cache")
    assert out.returncode == 2 and message in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "cache" / "trained").exists()


def test_a_bad_file_is_refused_with_status_2(tmp_path):
    np.savez(tmp_path / "p.npz", x=np.zeros((3, 1, 28, 28), np.float32), y=np.array([0, 10, 1]))
    out = qlib("evaluate", str(tmp_path / "p.npz"), "--preset", "smoke", cache=tmp_path / "cache")
    assert out.returncode == 2 and "y holds label 10" in out.stderr and "allowed: 0 to 9" in out.stderr


def test_the_cifar_cpu_preset_evaluates_a_poison_on_cifar_format_files(tmp_path, monkeypatch):
    """CIFAR-10 cannot be downloaded here: the preset runs on tiny CIFAR-format files (its sizes cut by overrides)."""
    from dataclasses import replace

    from conftest import write_fake_cifar

    from qlib.experiments import evaluate
    from qlib.presets import load_preset

    monkeypatch.setenv("QLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("QLIB_SYSTEM_DATA", str(tmp_path / "system"))
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))
    write_fake_cifar(tmp_path / "data" / "cifar-10-batches-py", per_batch=40)
    rng = np.random.default_rng(0)
    path = tmp_path / "cifar.npz"
    np.savez(
        path,
        x=rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8),
        y=np.arange(6),
        indices=np.array([0, 3, 50, 120, 199, 49999]),
    )
    cfg = replace(load_preset("cifar-cpu"), epochs=1, seeds=[0])
    assert (cfg.dataset, cfg.model, cfg.width) == ("cifar10", "resnet18", 0.25)
    result = evaluate.run(cfg, str(path), ["fp", "4W"], ["fp", "qat"], progress=False)
    assert result["poison"].provenance["read"]["sources"] == {"given": 6, "inside": 5, "of": 200}
    assert list(result["runs"].scheme) == ["fp", "4W"] and result["runs"]["drop"].notna().all()
