"""The attacks' constraint modes (bounds "image"/"none", a budget around the source) and the rule that only clean
rows set activation scales."""

import pytest
import torch
from conftest import toy_dataset
from torch import nn

from qlib.attacks import run_attack
from qlib.attacks.constraints import project_
from qlib.data import mix
from qlib.models import create_model
from qlib.poison import PoisonSet, perturbation_norms, validate
from qlib.presets import load_preset
from qlib.quant import parse_scheme, prepare_qat
from qlib.quant.quantizers import IntActivation
from qlib.registry import ParameterError
from qlib.train import fit


def small_net(data):
    return nn.Sequential(nn.Flatten(), nn.Linear(data.x[0].numel(), 16), nn.ReLU(), nn.Linear(16, data.num_classes))


GC = {"epochs": 25, "lr": 0.5, "threshold": 0.0, "device": "cpu"}
TGDA = {"epochs": 3, "leader_lr": 0.5, "follower_steps": 1, "cg_iters": 2, "batch_size": 60, "device": "cpu"}


@pytest.mark.parametrize("attack,settings", [("gc", GC), ("tgda", TGDA)])
def test_bounds_image_keeps_pixels_and_none_leaves_them(attack, settings):
    clean = toy_dataset(n=120)
    net = small_net(clean)
    supplied = {"target": net} if attack == "gc" else {"model": net}
    image = run_attack(attack, clean, 0.1, 0, **supplied, **settings)
    free = run_attack(attack, clean, 0.1, 0, **supplied, **settings, bounds="none")
    assert 0 <= image.x.min() and image.x.max() <= 1 and image.provenance["bounds"] == "image"
    assert free.provenance["bounds"] == "none"
    assert free.x.min() < 0 or free.x.max() > 1  # a large step size takes unclipped pixels out of the image range


@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l2", 0.3)])
def test_a_budget_around_the_source_holds_and_is_declared(norm, eps):
    clean = toy_dataset(n=120)
    poison = run_attack("gc", clean, 0.1, 0, target=small_net(clean), **GC, norm=norm, eps=eps)
    norms = perturbation_norms(poison, clean, norm)
    assert (norms <= eps + 1e-5).all() and norms.max() > 0.5 * eps  # the steps reach the budget's edge
    assert poison.provenance["norm"] == norm and poison.provenance["eps"] == eps


def test_projection_keeps_both_the_budget_and_the_bounds():
    source = torch.rand(8, 1, 4, 4)
    x = source + 3 * torch.randn(8, 1, 4, 4)
    project_(x, source, "image", "l2", 0.5)
    assert 0 <= x.min() and x.max() <= 1
    assert ((x - source).flatten(1).norm(dim=1) <= 0.5 + 1e-6).all()


def test_out_of_range_pixels_need_a_declared_bounds_none():
    x, y, idx = torch.full((2, 1, 4, 4), 2.0), torch.zeros(2, dtype=torch.int64), torch.arange(2)
    with pytest.raises(ValueError, match="leave \\[0, 1\\].*bounds: 'none'"):
        PoisonSet(x, y, idx, 0.1, {"attack": "gc"})
    PoisonSet(x, y, idx, 0.1, {"attack": "gc", "bounds": "none"})


def test_validate_names_a_bad_mode():
    clean = toy_dataset(n=20)
    base = {"attack": "gc", "params": {}, "seed": 0, "labels": "kept"}
    poison = PoisonSet(clean.x[:2].clone(), clean.y[:2].clone(), torch.arange(2), 0.1, {**base, "bounds": "pixels"})
    with pytest.raises(ValueError, match="bounds='pixels'; valid: image, none"):
        validate(poison, clean)
    replacing = PoisonSet(
        clean.x[:2].clone(),
        clean.y[:2].clone(),
        torch.arange(2),
        0.1,
        {**base, "bounds": "none", "mode": "replace", "norm": "linf", "eps": 0.1},
    )
    with pytest.raises(ValueError, match="bounds 'none' is for appended poisons only"):
        validate(replacing, clean)


@pytest.mark.parametrize(
    "setting,value,allowed",
    [("bounds", "pixel", "image, none"), ("norm", "l1", "linf, l2"), ("batchnorm", "train", "eval, batch")],
)
def test_presets_check_the_modes(setting, value, allowed):
    with pytest.raises(ParameterError, match=f"attacks.gc.{setting}='{value}'.*{allowed}"):
        load_preset("smoke", attacks={"gc": {setting: value}})
    assert load_preset("smoke", attacks={"tgda": {"bounds": "none"}}).attacks["tgda"]["bounds"] == "none"


def test_a_half_budget_is_refused():
    clean = toy_dataset(n=40)
    with pytest.raises(ValueError, match="needs both norm and eps"):
        run_attack("gc", clean, 0.1, 0, target=small_net(clean), **GC, norm="linf")


def test_batch_statistics_mode_leaves_the_target_as_it_was():
    clean = toy_dataset(n=60, size=8)
    target = create_model("cnn", clean, 0.25, seed=0).eval()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    poisons = {
        mode: run_attack("gc", clean, 0.1, 0, target=target, epochs=2, lr=0.1, device="cpu", batchnorm=mode)
        for mode in ("eval", "batch")
    }
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in before.items()) and not target.training
    assert not torch.equal(poisons["eval"].x, poisons["batch"].x)  # batch statistics give another gradient


def test_only_marked_rows_set_an_activation_scale():
    q = IntActivation(4).train()
    x = torch.cat([torch.ones(3, 5), torch.full((2, 5), 100.0)])
    q.observed_rows = torch.tensor([True, True, True, False, False])
    q(x)
    assert q.running_max == 1.0
    q.observed_rows = torch.zeros(5, dtype=torch.bool)
    q(x)
    assert q.running_max == 1.0  # a batch without a clean row leaves the scale as it was


def test_unbounded_appended_poisons_cannot_set_qat_scales():
    clean = toy_dataset(n=120, size=8)
    far = PoisonSet(clean.x[:12] * 0 + 50.0, clean.y[:12].clone(), torch.arange(12), 0.1, {"bounds": "none"})
    train = mix(clean, far)
    rows = torch.cat([torch.ones(len(clean), dtype=torch.bool), torch.zeros(len(far), dtype=torch.bool)])
    maxima = {}
    for name, scale_rows in (("clean rows", rows), ("every row", None)):
        model = prepare_qat(create_model("mlp", clean, 0.25, seed=0), parse_scheme("4W4A", keep_fp=()))
        fit(model, train, epochs=1, lr=0.01, batch_size=40, seed=0, device="cpu", progress=False, scale_rows=scale_rows)
        (q,) = [m for m in model.modules() if isinstance(m, IntActivation)]  # the hidden activation only
        maxima[name] = float(q.running_max)
    assert maxima["every row"] > 10 * maxima["clean rows"]
