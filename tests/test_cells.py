"""The study's attack cells (``qlib.cells``): preset settings, cached GradPC targets and poisons, their keys, and the
attack grid (``qlib.experiments.attack_grid``)."""

import json
from dataclasses import replace

import pytest
from conftest import toy_dataset

from qlib import artifacts, cells
from qlib.cache import cache_root
from qlib.experiments import attack_grid, ensure, grid_cells
from qlib.paper import FP
from qlib.presets import load_preset
from qlib.quant import parse_scheme


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))
    cfg = load_preset(
        "smoke",
        epochs=2,
        width=0.25,
        batch_size=32,
        seeds=[0, 1],
        eps_w=0.05,
        attacks={"gc": {"epochs": 3}, "tgda": {"epochs": 2, "follower_steps": 1, "cg_iters": 2, "batch_size": 40}},
    )
    train, test = toy_dataset(n=160, size=28, seed=0), toy_dataset(n=80, size=28, seed=1)
    monkeypatch.setattr(cells, "load_data", lambda c: (train, test))
    monkeypatch.setattr(cells, "sizes", lambda c: (len(train), len(test)))
    return cfg, train, test


def test_attack_settings_come_from_the_preset(setup):
    cfg, _, _ = setup
    assert (
        cells.settings(cfg, "gc")
        == cells.settings(cfg, "gc_q")
        == {"epochs": 3, "lr": 0.1, "optimizer": "adam", "chunk": 512}
    )
    assert cells.settings(cfg, "tgda_q") == {
        "epochs": 2,
        "leader_lr": 0.05,
        "follower_steps": 1,
        "cg_iters": 2,
        "batch_size": 40,
        "chunk": 2048,
    }
    assert cells.settings(cfg, "label_flip") == {}
    assert cells.settings(cfg, "em") == cfg.attacks["em"]
    with pytest.raises(ValueError, match="unknown attack 'gcq'"):
        cells.settings(cfg, "gcq")


def test_poisons_are_cached_and_a_rerun_attacks_nothing(setup, monkeypatch):
    cfg, _, _ = setup
    first, seconds = cells.poison(cfg, "gc", 0, 0.1).value()
    assert first.provenance["attack"] == "gc" and first.provenance["params"]["epochs"] == 3 and seconds > 0
    monkeypatch.setattr(cells, "run_attack", lambda *a, **k: pytest.fail("re-ran a cached attack"))
    monkeypatch.setattr(cells, "gradpc", lambda *a, **k: pytest.fail("re-made a cached target"))
    again, seconds_again = cells.poison(cfg, "gc", 0, 0.1).value()
    assert again.digest() == first.digest() and seconds_again == seconds


def test_the_key_holds_budget_seed_target_and_scheme(setup):
    cfg, _, _ = setup
    made = lambda *a, **k: cells.poison(*a, **k).value()[0]
    base = made(cfg, "label_flip", 0, 0.1).digest()
    assert made(cfg, "label_flip", 0, 0.2).digest() != base
    assert made(cfg, "label_flip", 1, 0.1).digest() != base
    gc = made(cfg, "gc", 0, 0.1)
    other_target = made(replace(cfg, eps_w=0.2), "gc", 0, 0.1)
    assert gc.digest() != other_target.digest()
    q4 = made(cfg, "gc_q", 0, 0.1, parse_scheme("4W"))
    q1 = made(cfg, "gc_q", 0, 0.1, parse_scheme("1W", "bnn"))
    assert q4.provenance["params"]["scheme"] == "4W" and q1.provenance["params"]["scheme"] == "1W bnn"
    assert len(list((cache_root() / "poison").glob("*.json"))) == 7


def test_a_poison_made_without_a_model_is_keyed_by_its_training_set():
    """Without a model input nothing else ties a poison to the set it was made in: smoke's label flip (1,000 images)
    and cpu's (6,000) once shared a key, so one cache served the other's poisons (refused on load as the wrong size)."""
    smoke = load_preset("smoke")
    key = lambda cfg, name: cells.poison(cfg, name, 0, 0.03).id
    for name in ("label_flip", "ops", "dc"):  # no model; no model; a fresh model
        assert key(smoke, name) != key(replace(smoke, train_size=6000), name)
        assert key(smoke, name) != key(replace(smoke, dataset="cifar10"), name)
        assert key(smoke, name) == key(replace(smoke, epochs=9), name)  # training settings of no model: same poison
    gc = lambda cfg: cells.poison(cfg, "gc", 0, 0.03)
    assert gc(smoke).inputs and "data" not in gc(smoke).key  # its model's key holds the set already


def test_a_quantization_oblivious_poison_ignores_the_scheme(setup):
    cfg, _, _ = setup
    assert cells.poison(cfg, "gc", 0, 0.1, parse_scheme("4W")).id == cells.poison(cfg, "gc", 0, 0.1).id
    assert (
        cells.poison(cfg, "gc_q", 0, 0.1, parse_scheme("4W")).id
        != cells.poison(cfg, "gc_q", 0, 0.1, parse_scheme("8W")).id
    )


def test_quantization_aware_attacks_need_a_scheme(setup):
    cfg, _, _ = setup
    for scheme in (None, parse_scheme("fp")):
        with pytest.raises(ValueError, match="'tgda_q' is quantization-aware"):
            cells.poison(cfg, "tgda_q", 0, 0.1, scheme)


def test_a_tampered_cached_poison_is_refused(setup):
    cfg, _, _ = setup
    cells.poison(cfg, "label_flip", 0, 0.1).value()
    (manifest,) = (cache_root() / "poison").glob("*.json")
    text = json.loads(manifest.read_text())
    text["meta"]["provenance"]["labels"] = "kept"  # flipped labels no longer match the declared rule
    manifest.write_text(json.dumps(text))
    with pytest.raises(ValueError, match="do not follow the 'kept' rule"):
        cells.poison(cfg, "label_flip", 0, 0.1).value()
    (tensors,) = (cache_root() / "poison").glob("*.safetensors")
    tensors.write_bytes(tensors.read_bytes()[:-8])
    with pytest.raises(artifacts.ArtifactError, match="corrupted"):
        cells.poison(cfg, "label_flip", 0, 0.1).value()


def test_gradpc_target_is_cached_within_budget(setup, monkeypatch):
    cfg, _, _ = setup
    target, result = cells.target(cfg, 0).value()
    assert 0 < result["eps_w"] <= cfg.eps_w * (1 + 1e-4)
    monkeypatch.setattr(cells, "gradpc", lambda *a, **k: pytest.fail("re-made a cached target"))
    again, result_again = cells.target(cfg, 0).value()
    assert result_again == result
    assert all((a == b).all() for a, b in zip(target.state_dict().values(), again.state_dict().values()))


def test_a_model_trained_on_a_poison_names_the_poison_cell(setup):
    """A trained model's key names its poison by the poison cell's id, and reads that cell."""
    cfg, _, _ = setup
    nu = cells.poison(cfg, "label_flip", 0, 0.1)
    model = cells.trained(cfg, 0, FP, nu)
    assert model.key["poison"] == nu.id and model.inputs == (nu,)
    assert cells.trained(cfg, 0, FP).key["poison"] is None
    assert model.id != cells.trained(cfg, 0, FP, cells.poison(cfg, "label_flip", 1, 0.1)).id


def test_attack_grid_rows(setup):
    cfg, _, _ = setup
    settings = [("fp", FP), ("ptq", parse_scheme("4W")), ("qat", parse_scheme("8W8A"))]
    grid = attack_grid.entries(replace(cfg, seeds=[3]), ["label_flip", "gc", "gc_q"], [0.1], settings)
    ensure(grid_cells(grid), progress=False)
    df = attack_grid.rows(grid)
    assert len(df) == 3 + 3 + 2  # label flip and GC in 3 settings, GC-Q in the 2 quantized ones
    assert set(df.seed) == {3}
    assert set(df[df.attack == "gc_q"].regime) == {"ptq", "qat"}
    assert (df["drop"] == df.acc - df.clean_acc).all()
    gc = df[df.attack.str.startswith("gc")]
    assert gc.objective_initial.notna().all() and (gc.objective_final <= gc.objective_initial).all()
    assert df[df.attack == "label_flip"].objective_initial.isna().all()
    assert df.groupby(["attack", "regime", "scheme"]).poison.nunique().eq(1).all()
    assert df[df.attack == "gc"].poison.nunique() == 1  # an oblivious poison is made once, read in every setting
