"""The study's attack layer: preset hyperparameters, cached GradPC targets and poisons, the attack grid."""

import json
from dataclasses import replace

import pytest

from conftest import toy_dataset
from qlib import artifacts, study
from qlib.cache import cache_root
from qlib.presets import load_preset
from qlib.quant import parse_scheme


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))
    cfg = load_preset("smoke", epochs=2, width=0.25, batch_size=32, seeds=[0, 1], eps_w=0.05, gc_epochs=3,
                      tgda_epochs=2, tgda_follower_steps=1, tgda_cg_iters=2, tgda_batch_size=40)
    train, test = toy_dataset(n=160, size=28, seed=0), toy_dataset(n=80, size=28, seed=1)
    monkeypatch.setattr(study, "load_data", lambda c: (train, test))
    return cfg, train, test


def test_attack_params_come_from_the_preset(setup):
    cfg, _, _ = setup
    assert study.attack_params(cfg, "gc") == study.attack_params(cfg, "gc_q") == {"epochs": 3, "lr": 0.1, "optimizer": "adam", "chunk": 512}
    assert study.attack_params(cfg, "tgda_q") == {"epochs": 2, "leader_lr": 0.05, "follower_steps": 1, "cg_iters": 2, "batch_size": 40,
                                                    "chunk": 2048}
    assert study.attack_params(cfg, "label_flip") == {}
    with pytest.raises(ValueError, match="unknown attack 'gcq'"):
        study.attack_params(cfg, "gcq")


def test_poisons_are_cached_and_a_rerun_attacks_nothing(setup, monkeypatch):
    cfg, train, test = setup
    first, seconds = study.attack_poison(cfg, "gc", 0, 0.1, train, test)
    assert first.provenance["attack"] == "gc" and first.provenance["params"]["epochs"] == 3 and seconds > 0
    monkeypatch.setattr(study, "run_attack", lambda *a, **k: pytest.fail("re-ran a cached attack"))
    monkeypatch.setattr(study, "gradpc", lambda *a, **k: pytest.fail("re-made a cached target"))
    again, seconds_again = study.attack_poison(cfg, "gc", 0, 0.1, train, test)
    assert again.digest() == first.digest() and seconds_again == seconds


def test_the_key_holds_budget_seed_target_and_scheme(setup):
    cfg, train, test = setup
    base = study.attack_poison(cfg, "label_flip", 0, 0.1, train, test)[0].digest()
    assert study.attack_poison(cfg, "label_flip", 0, 0.2, train, test)[0].digest() != base
    assert study.attack_poison(cfg, "label_flip", 1, 0.1, train, test)[0].digest() != base
    gc = study.attack_poison(cfg, "gc", 0, 0.1, train, test)[0]
    other_target = study.attack_poison(replace(cfg, eps_w=0.2), "gc", 0, 0.1, train, test)[0]
    assert gc.digest() != other_target.digest()
    q4 = study.attack_poison(cfg, "gc_q", 0, 0.1, train, test, parse_scheme("4W"))[0]
    q1 = study.attack_poison(cfg, "gc_q", 0, 0.1, train, test, parse_scheme("1W", "bnn"))[0]
    assert q4.provenance["params"]["scheme"] == "4W" and q1.provenance["params"]["scheme"] == "1W bnn"
    assert len(list((cache_root() / "poison").glob("*.json"))) == 7


def test_quantization_aware_attacks_need_a_scheme(setup):
    cfg, train, test = setup
    for scheme in (None, parse_scheme("fp")):
        with pytest.raises(ValueError, match="'tgda_q' is quantization-aware"):
            study.attack_poison(cfg, "tgda_q", 0, 0.1, train, test, scheme)


def test_a_tampered_cached_poison_is_refused(setup):
    cfg, train, test = setup
    study.attack_poison(cfg, "label_flip", 0, 0.1, train, test)
    (manifest,) = (cache_root() / "poison").glob("*.json")
    text = json.loads(manifest.read_text())
    text["meta"]["provenance"]["labels"] = "kept"  # flipped labels no longer match the declared rule
    manifest.write_text(json.dumps(text))
    with pytest.raises(ValueError, match="do not follow the 'kept' rule"):
        study.attack_poison(cfg, "label_flip", 0, 0.1, train, test)
    (tensors,) = (cache_root() / "poison").glob("*.safetensors")
    tensors.write_bytes(tensors.read_bytes()[:-8])
    with pytest.raises(artifacts.ArtifactError, match="corrupted"):
        study.attack_poison(cfg, "label_flip", 0, 0.1, train, test)


def test_gradpc_target_is_cached_within_budget(setup, monkeypatch):
    cfg, train, test = setup
    target, result = study.gradpc_target(cfg, 0, train, test)
    assert 0 < result["eps_w"] <= cfg.eps_w * (1 + 1e-4)
    monkeypatch.setattr(study, "gradpc", lambda *a, **k: pytest.fail("re-made a cached target"))
    again, result_again = study.gradpc_target(cfg, 0, train, test)
    assert result_again == result
    assert all((a == b).all() for a, b in zip(target.state_dict().values(), again.state_dict().values()))


def test_attack_grid_rows(setup):
    cfg, _, _ = setup
    cells = [("fp", study.FP), ("ptq", parse_scheme("4W")), ("qat", parse_scheme("8W8A"))]
    df = study.attack_drops(replace(cfg, seeds=[3]), ["label_flip", "gc", "gc_q"], [0.1], cells, progress=False)
    assert len(df) == 3 + 3 + 2  # label flip and GC in 3 cells, GC-Q in the 2 quantized cells
    assert set(df.seed) == {3}
    assert set(df[df.attack == "gc_q"].regime) == {"ptq", "qat"}
    assert (df["drop"] == df.acc - df.clean_acc).all()
    gc = df[df.attack.str.startswith("gc")]
    assert gc.objective_initial.notna().all() and (gc.objective_final <= gc.objective_initial).all()
    assert df[df.attack == "label_flip"].objective_initial.isna().all()
