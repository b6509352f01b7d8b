"""Notebook 06's design: regimes chosen on the choice seeds only, claims on fresh seeds, modes in every cell key."""

import pandas as pd
import pytest

from qlib.experiments import strength
from qlib.presets import load_preset
from qlib.registry import ParameterError


def gc_runs(drops: dict) -> pd.DataFrame:
    """Tidy FP rows of GC: {(model, bounds, eps_d): [drop per seed 0, 1, …]}."""
    return pd.DataFrame(
        [
            {"model": m, "bounds": b, "eps_d": e, "attack": "gc", "batchnorm": "eval", "seed": s, "drop": d}
            for (m, b, e), ds in drops.items()
            for s, d in enumerate(ds)
        ]
    )


def test_regimes_are_chosen_on_the_choice_seeds_only():
    cfg = load_preset("cpu")  # choice seeds 0-4
    clear, none = [-0.010, -0.011, -0.009, -0.012, -0.010], [0.001, -0.002, 0.002, -0.001, 0.0]
    runs = gc_runs(
        {
            ("lr", "image", 0.03): none + [-0.5] * 5,  # only the later seeds would qualify it
            ("lr", "image", 0.1): clear,
            ("lr", "none", 0.03): clear,
            ("lr", "none", 0.1): clear,
            ("mlp", "image", 0.03): none,
            ("mlp", "image", 0.1): none,
            ("mlp", "none", 0.03): none,
            ("mlp", "none", 0.1): clear,
        }
    )
    assert strength.regimes(cfg, runs) == [
        {"model": "lr", "bounds": "image", "eps_d": 0.1},
        {"model": "lr", "bounds": "none", "eps_d": 0.03},
        {"model": "mlp", "bounds": "none", "eps_d": 0.1},
    ]


def test_claims_are_decided_on_fresh_seeds():
    with pytest.raises(ParameterError, match="claim_seeds=.*seed\\(s\\) \\[4\\] also chose the regimes"):
        load_preset("cpu", experiments={"strength": {"claim_seeds": [4, 20]}})
    with pytest.raises(ParameterError, match="choice_seeds=.*subset of seeds"):
        load_preset("cpu", experiments={"strength": {"choice_seeds": [0, 30]}})
    cfg = load_preset("smoke")
    ((labels, entries),) = strength.claim_grids(cfg, [{"model": "mlp", "bounds": "none", "eps_d": 0.1}])
    assert {e[0]["seed"] for e in entries} == set(cfg.experiments.strength.claim_seeds)


def test_the_mode_reaches_every_cell_key_and_label_flip_has_none():
    cfg = load_preset("smoke")
    grids = {(g["model"], g["bounds"], g["batchnorm"]): entries for g, entries in strength.drop_grids(cfg)}
    image = {e[1]["poison"].id for e in grids[("lr", "image", "eval")] if e[0]["attack"] == "gc"}
    free = [e[1]["poison"] for e in grids[("lr", "none", "eval")]]
    assert {c.key["params"].get("bounds") for c in free} == {"none"} and not image & {c.id for c in free}
    assert {e[0]["attack"] for e in grids[("lr", "none", "eval")]} == {"gc", "tgda"}
    batch = [e[1]["poison"] for e in grids[("cnn", "image", "batch")]]
    assert {c.key["params"].get("batchnorm") for c in batch} == {"batch"}
    # a small model quantizes its whole network; cnn keeps the preset's first and last layers in FP
    claims = strength.claim_grids(cfg, [{"model": "lr", "bounds": "image", "eps_d": 0.03}])[0][1]
    qat = [e for e in claims if e[0]["regime"] == "qat"]
    assert qat and all(e[1]["clean"].key["scheme"]["keep_fp"] == () for e in qat)
    assert all(e[0]["scheme"].a_bits is None for e in qat)  # lr: weight-only schemes only
