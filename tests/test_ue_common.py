"""What the unlearnable examples share: replacing μ's images, the declared perturbation budget that validate
enforces, and the helpers of ``attacks.unlearnable.common`` (the preset's settings of each method:
``tests/test_presets.py``)."""

import pytest
import torch
from conftest import toy_dataset

from qlib.attacks.unlearnable.common import chosen, make_poison, project_linf, scale_l2
from qlib.data import mix
from qlib.poison import perturbation_norms, validate


@pytest.fixture
def clean():
    return toy_dataset(n=40, size=8)


def poison_with(clean, delta, norm, eps, eps_d=1.0, seed=0):
    idx = chosen(clean, eps_d, seed)
    return make_poison(clean, idx, clean.x[idx] + delta[: len(idx)], eps_d, seed, "test", {}, norm, eps)


def test_replace_mode_swaps_images_in_place(clean):
    delta = torch.full_like(clean.x, 0.01)
    p = poison_with(clean, delta, "linf", 0.01, eps_d=0.25)
    mixed = mix(clean, p)
    assert len(mixed) == len(clean) and torch.equal(mixed.y, clean.y)
    assert torch.equal(mixed.x[p.indices], p.x)
    rest = torch.ones(len(clean), dtype=torch.bool)
    rest[p.indices] = False
    assert torch.equal(mixed.x[rest], clean.x[rest])
    assert p.provenance["mode"] == "replace" and p.provenance["labels"] == "kept"


def test_chosen_covers_everything_at_eps_d_one(clean):
    assert torch.equal(chosen(clean, 1.0, seed=3), torch.arange(len(clean)))
    part = chosen(clean, 0.25, seed=3)
    assert len(part) == 10 and torch.equal(part, part.sort().values)


def test_norms_and_validate_enforce_the_declared_budget(clean):
    delta = torch.zeros_like(clean.x)
    delta[:, :, 2, 3] = 0.05  # one pixel, L∞ 0.05, L2 0.05, L0 1
    for norm, eps in (("linf", 0.05), ("l2", 0.05), ("l0", 1)):
        p = validate(poison_with(clean, delta, norm, eps), clean)
        assert perturbation_norms(p, clean, norm).max() <= eps + 1e-6
    delta[5, :, 0, 0] = 0.2  # image 5 breaks every budget
    for norm, eps in (("linf", 0.05), ("l2", 0.05), ("l0", 1)):
        with pytest.raises(ValueError, match=rf"poison 5 \(source image 5\) leaves its {norm} budget"):
            validate(poison_with(clean, delta, norm, eps), clean)
    with pytest.raises(ValueError, match="unknown perturbation norm 'l3'"):
        validate(poison_with(clean, delta, "l3", 1.0), clean)


def test_validate_rejects_an_unknown_mode(clean):
    p = poison_with(clean, torch.zeros_like(clean.x), "linf", 0.1)
    p.provenance["mode"] = "overwrite"
    with pytest.raises(ValueError, match="mode='overwrite'; valid: append, replace"):
        validate(p, clean)


def test_projections():
    x = torch.rand(6, 1, 4, 4)
    delta = project_linf(torch.randn(6, 1, 4, 4), x, 0.1)
    assert delta.abs().max() <= 0.1 + 1e-7 and (x + delta).min() >= 0 and (x + delta).max() <= 1
    scaled = scale_l2(torch.randn(6, 1, 4, 4), 2.0)
    assert torch.allclose(scaled.flatten(1).norm(dim=1), torch.full((6,), 2.0))


def test_validate_rejects_non_finite_pixels_and_undeclared_budgets(clean):
    p = poison_with(clean, torch.zeros_like(clean.x), "linf", 0.1)
    x = p.x.clone()
    x[3, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="1 non-finite values"):
        type(p)(x, p.y, p.indices, p.eps_d, p.provenance)
    undeclared = {k: v for k, v in p.provenance.items() if k not in ("norm", "eps")}
    with pytest.raises(ValueError, match="must declare its perturbation budget"):
        validate(type(p)(p.x, p.y, p.indices, p.eps_d, undeclared), clean)


def test_l0_counts_any_change(clean):
    delta = torch.zeros_like(clean.x)
    delta[:, :, 0, 0], delta[:, :, 5, 5] = 0.2, 1e-6  # two positions, one changed by a hair
    p = poison_with(clean, delta, "l0", 2)
    assert perturbation_norms(p, clean, "l0").min() == 2
    with pytest.raises(ValueError, match="leaves its l0 budget"):
        validate(poison_with(clean, delta, "l0", 1), clean)
