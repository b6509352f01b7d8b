"""Backdoors end to end on ``smoke``: a BadNets file written with plain numpy in the documented layout gives, through
``python -m qlib evaluate``, the built-in attack's attack success rate; notebook 09's grid, claims and tables."""

import numpy as np
import pandas as pd
import pytest
from inprocess import run_qlib

from qlib import data
from qlib.cells import backdoor, load_data, poison
from qlib.data import SOURCES, _find
from qlib.experiments import backdoors, ensure
from qlib.paper import FP
from qlib.presets import load_preset
from qlib.quant import parse_scheme

pytestmark = pytest.mark.skipif(
    _find(SOURCES.get("fashion-mnist"), "train") is None, reason="Fashion-MNIST not installed"
)


def test_a_numpy_badnets_file_gives_the_built_in_attacks_success_rate(tmp_path, monkeypatch):
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))
    cfg = load_preset("smoke")
    built = poison(cfg, "badnets", 0, 0.05)
    settings = [("fp", FP), ("ptq", parse_scheme("4W")), ("qat", parse_scheme("1W", "bnn"))]
    ours = {(r, s.name): backdoor(cfg, 0, r, s, built, built) for r, s in settings}
    ensure(list(ours.values()), progress=False)
    train, _ = load_data(cfg)
    nu = built.value()[0]

    # the same sources, stamped and relabelled with numpy alone, in the full split's uint8 images
    idx = train.origin[nu.indices].numpy()
    x = (data.load("fashion-mnist", "train").x[idx, 0].numpy() * 255).round().astype(np.uint8)
    board = (np.add.outer(np.arange(3), np.arange(3)) % 2 == 0).astype(np.uint8) * 255
    x[:, 24:27, 24:27] = board
    pattern, mask = np.zeros((28, 28), np.uint8), np.zeros((28, 28), np.uint8)
    pattern[24:27, 24:27], mask[24:27, 24:27] = board, 255
    path = tmp_path / "badnets.npz"
    labels = np.zeros(len(idx), np.int64)
    np.savez(path, x=x[..., None], y=labels, indices=idx, mode=np.array("replace"), trigger=pattern, trigger_mask=mask,
             target_class=np.array(0))  # fmt: skip

    out = tmp_path / "rows.csv"
    args = ["--schemes", "fp", "4W", "1W:bnn", "--regimes", "fp", "ptq", "qat", "--seeds", "0", "--out", str(out)]
    done = run_qlib("evaluate", str(path), "--preset", "smoke", *args, env={"QLIB_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "backdoor: a patch of 9 pixels → class 0" in done.stdout and "clean models' ASR" in done.stdout
    rows = pd.read_csv(out)
    for r, s in settings:
        row = rows[(rows.regime == r) & (rows.scheme == s.name)].iloc[0]
        assert row.asr == ours[(r, s.name)].value()["asr"], (r, s.name)  # same data, same seed: bit for bit
    assert (rows.clean_asr < rows.asr).any()


def test_the_notebook_grid_reads_every_setting_and_its_claims(tmp_path, monkeypatch):
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))
    cfg = load_preset("smoke")
    result = backdoors.run(cfg, progress=False)
    runs = result["runs"]
    # 3 attacks x 7 settings, and Sleeper Agent's aware poisons under the 3 QAT schemes
    assert len(runs) == 3 * 7 + 3 and set(runs.poisons) == {"oblivious", "aware"}
    assert runs[runs.poisons == "aware"].regime.eq("qat").all()
    assert runs.asr.between(0, 1).all() and runs.clean_asr.between(0, 1).all()
    tested = backdoors.claims(backdoors.summary(runs))
    assert len(tested) == 3 + 3 * 6 + 3 and set(tested.family) == {
        "works in FP",
        "quantization removes it",
        "aware keeps it",
    }
    assert "ASR (%)" in backdoors.table(runs).columns
    assert {a: nu.trigger.target_class for a, nu in result["poisons"].items()} == {
        "badnets": 0,
        "blend": 0,
        "sleeper_agent": 0,
    }
    assert result["poisons"]["sleeper_agent"].trigger.source_class == 1
