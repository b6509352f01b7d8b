"""The common attack interface, validate(), label flip, and the retrain-and-evaluate harness."""

import pytest
import torch
from conftest import toy_dataset

from qlib import cells
from qlib.artifacts import ArtifactError
from qlib.attacks import ATTACKS, run_attack
from qlib.attacks.base import Needs, needs
from qlib.cache import cache_root
from qlib.poison import PoisonSet, poison_count, validate
from qlib.presets import load_preset
from qlib.quant import parse_scheme


@pytest.fixture
def clean():
    return toy_dataset(n=200, size=28)


def test_poison_count_is_round_eps_times_n():
    assert poison_count(0.03, 50000) == 1500 and poison_count(0.1, 200) == 20 and poison_count(1.0, 7) == 7
    with pytest.raises(ValueError, match="rounds to zero"):
        poison_count(0.001, 100)
    for bad in (0, 1.01, -0.5):
        with pytest.raises(ValueError, match=r"allowed is a number in \(0, 1\]"):
            poison_count(bad, 100)


def test_label_flip(clean):
    p = run_attack("label_flip", clean, 0.1, seed=3)
    assert len(p) == 20 and len(torch.unique(p.indices)) == 20
    assert torch.equal(p.x, clean.x[p.indices])
    assert torch.equal(p.y, 3 - clean.y[p.indices])
    assert p.provenance == {"attack": "label_flip", "params": {}, "seed": 3, "labels": "flipped"}
    again, other = run_attack("label_flip", clean, 0.1, seed=3), run_attack("label_flip", clean, 0.1, seed=4)
    assert torch.equal(p.indices, again.indices) and torch.equal(p.x, again.x)
    assert not torch.equal(p.indices, other.indices)


def test_unknown_attack_and_bad_budget(clean):
    with pytest.raises(ValueError, match="unknown attack 'gc2' .*valid: .*label_flip"):
        run_attack("gc2", clean, 0.1, seed=0)
    with pytest.raises(ValueError, match="eps_d=2"):
        run_attack("label_flip", clean, 2, seed=0)
    assert "label_flip" in ATTACKS.names()


def tampered(p, **changes):
    fields = {"x": p.x, "y": p.y, "indices": p.indices, "eps_d": p.eps_d, "provenance": p.provenance, **changes}
    return PoisonSet(**fields)


def test_validate_catches_what_is_wrong(clean):
    p = run_attack("label_flip", clean, 0.1, seed=0)
    kept = {**p.provenance, "labels": "kept"}
    cases = [
        (tampered(p, x=p.x[:19], y=p.y[:19], indices=p.indices[:19]), "expected round"),
        (tampered(p, y=clean.y[p.indices]), "flipped"),
        (tampered(p, provenance=kept), "kept"),
        (tampered(p, indices=p.indices.clone().fill_(5)), "repeat"),
        (tampered(p, indices=p.indices + 1000), r"leave \[0, 200\)"),
        (tampered(p, provenance={"attack": "x", "labels": "kept"}), "lacks 'params'"),
        (tampered(p, x=torch.zeros(20, 1, 14, 14)), "poison images are"),
    ]
    for poison, message in cases:
        with pytest.raises(ValueError, match=message):
            validate(poison, clean)
    assert validate(p, clean) is p


def test_digest_changes_with_content(clean):
    p = run_attack("label_flip", clean, 0.1, seed=0)
    assert p.digest() == run_attack("label_flip", clean, 0.1, seed=0).digest()
    assert p.digest() != tampered(p, x=p.x.clamp(0.01, 0.99)).digest()


def test_every_attack_declares_what_it_needs():
    """What the pipeline supplies each attack is declared at registration (``Needs``), not by per-attack branches."""
    for name in ATTACKS.names():
        assert isinstance(needs(name), Needs), name
    assert needs("label_flip") == Needs(device=False)
    assert (needs("gc").model, needs("gc_q").model, needs("gc_q").scheme, needs("gc_q").settings) == (
        "gradpc",
        "gradpc",
        "attacked",
        "gc",
    )
    assert (needs("tgda").model, needs("tgda_q").scheme, needs("tgda_q").settings) == ("trained", "attacked", "tgda")
    gm = needs("gradient_matching")
    assert (gm.model, gm.scheme, gm.target, gm.replaces) == ("trained", "surrogate", True, True)
    with pytest.raises(ValueError, match="unknown attack 'gc2'"):
        needs("gc2")


@pytest.fixture
def harness(tmp_path, monkeypatch):
    """The retrain-and-evaluate harness: the cells of a clean and a poisoned model's accuracy, on the toy problem."""
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))
    cfg = load_preset("smoke", epochs=3, width=0.25, batch_size=32, seeds=[0])
    train, test = toy_dataset(n=160, size=28, seed=0), toy_dataset(n=80, size=28, seed=1)
    monkeypatch.setattr(cells, "load_data", lambda c: (train, test))
    monkeypatch.setattr(cells, "sizes", lambda c: (len(train), len(test)))
    return cfg, train, test


def retrain_and_evaluate(cfg, seed: int, nu, regime: str, scheme) -> dict:
    """Section 4.1's evaluation: the accuracy of the model trained on μ + ν in ``regime`` and of the clean model of
    the same scheme, regime and seed, and the drop."""
    clean, poisoned = cells.accuracy(cfg, seed, regime, scheme), cells.accuracy(cfg, seed, regime, scheme, nu)
    clean_acc, acc = clean.value()["acc"], poisoned.value()["acc"]
    return {"clean_acc": clean_acc, "acc": acc, "drop": acc - clean_acc}


def test_retrain_and_evaluate_reports_the_drop_against_the_same_clean_model(harness, effect):
    cfg, train, test = harness
    seed = effect.seed
    flip = cells.poison(cfg, "label_flip", seed, 1.0)  # every image also appears with its flipped label
    assert flip.value()[0].digest() == run_attack("label_flip", train, 1.0, seed=seed).digest()
    fp = retrain_and_evaluate(cfg, seed, flip, "fp", parse_scheme("fp"))
    assert fp["drop"] == pytest.approx(fp["acc"] - fp["clean_acc"])
    effect.check("harness clean toy accuracy", fp["clean_acc"])
    ptq = retrain_and_evaluate(cfg, seed, flip, "ptq", parse_scheme("8W"))
    effect.check("harness 8-bit PTQ clean accuracy change", abs(ptq["clean_acc"] - fp["clean_acc"]))
    qat = cells.accuracy(cfg, seed, "qat", parse_scheme("4W4A"), flip)
    assert (qat.args["regime"], qat.args["scheme"].name, qat.inputs[0].args["scheme"].name) == ("qat", "4W4A", "4W4A")
    assert qat.inputs[0].inputs == (flip,) and 0 <= qat.value()["acc"] <= 1


def test_the_clean_model_is_shared_by_every_poison_and_ptq_reads_the_fp_model(harness):
    cfg, _, _ = harness
    clean = cells.accuracy(cfg, 0, "ptq", parse_scheme("8W"))
    assert clean.inputs[0].id == cells.accuracy(cfg, 0, "fp", parse_scheme("fp")).inputs[0].id  # one FP training
    a, b = (
        cells.accuracy(cfg, 0, "ptq", parse_scheme("8W"), cells.poison(cfg, "label_flip", 0, e)) for e in (0.5, 1.0)
    )
    assert len({clean.id, a.id, b.id}) == 3 and a.inputs[0].id != b.inputs[0].id


def test_rerun_retrains_nothing(harness, monkeypatch):
    cfg, _, _ = harness
    flip = cells.poison(cfg, "label_flip", 0, 0.5)
    first = retrain_and_evaluate(cfg, 0, flip, "qat", parse_scheme("4W"))
    monkeypatch.setattr(cells, "fit", lambda *a, **k: pytest.fail("retrained a cached model"))
    monkeypatch.setattr(cells, "evaluate", lambda *a, **k: pytest.fail("re-evaluated a cached model"))
    assert retrain_and_evaluate(cfg, 0, flip, "qat", parse_scheme("4W")) == first


def test_a_corrupted_cached_evaluation_is_an_error_naming_it(harness):
    cfg, _, _ = harness
    flip = cells.poison(cfg, "label_flip", 0, 0.5)
    retrain_and_evaluate(cfg, 0, flip, "fp", parse_scheme("fp"))
    results = sorted((cache_root() / "accuracy").glob("*.json"))
    assert len(results) == 2  # the clean model and the poisoned one
    results[0].write_text("{not json")
    with pytest.raises(ArtifactError, match=results[0].name):
        retrain_and_evaluate(cfg, 0, flip, "fp", parse_scheme("fp"))


def test_harness_rejects_mismatched_regime_and_scheme(harness):
    cfg, _, _ = harness
    flip = cells.poison(cfg, "label_flip", 0, 0.5)
    with pytest.raises(ValueError, match="unknown regime 'int'"):
        cells.accuracy(cfg, 0, "int", parse_scheme("4W"), flip)
    with pytest.raises(ValueError, match="does not go with"):
        cells.accuracy(cfg, 0, "fp", parse_scheme("4W"), flip)
    with pytest.raises(ValueError, match="does not go with"):
        cells.accuracy(cfg, 0, "qat", parse_scheme("fp"), flip)
