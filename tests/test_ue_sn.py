"""SN (synthetic linearly separable noise): contract, end-to-end on real Fashion-MNIST, and the linear shortcut."""

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import toy_dataset
from ue_checks import accuracy_drop, check_contract, fashion_small, linear_fit_on_noise

from qlib.attacks import run_attack
from qlib.attacks.unlearnable import sn  # noqa: F401  (registers "sn")

FASHION = {"patch": 7, "pixel_scale": 24 / 255}  # the cpu preset: a 4×4 grid of 7×7 blocks, 4× CIFAR's scale
RADIUS = math.sqrt(28 * 28) * FASHION["pixel_scale"]
# the end-to-end statistic (tests/effects.py) needs an effect large against its spread over seeds and CPUs:
# 5× the cpu preset's scale: at 2× the drop varied from 30 to 45 points between seeds and kernels
END_TO_END = {**FASHION, "pixel_scale": 0.5}


@pytest.fixture(scope="module")
def poisoned(effect_seed):
    return run_attack("sn", fashion_small()[0], 1.0, seed=effect_seed, **END_TO_END)


def test_contract():
    check_contract("sn", fashion_small(200, 100)[0], "l2", RADIUS, **FASHION)


def test_default_radius_is_the_originals():
    clean = toy_dataset(40, num_classes=4, size=32, channels=3)
    assert run_attack("sn", clean, 1.0, seed=0).provenance["eps"] == pytest.approx(math.sqrt(3 * 32 * 32) * 6 / 255)


def noise_fit(noise, y):
    """linear_fit_on_noise on the noise itself, before it is added and clipped."""
    poison = SimpleNamespace(x=noise, y=y, indices=torch.arange(len(y)))
    return linear_fit_on_noise(poison, SimpleNamespace(x=torch.zeros_like(noise), num_classes=10))


def test_noise_is_blockwise_at_the_radius_and_linearly_separable():
    y = torch.arange(500) % 10
    noise = sn.sn_noise(y, 10, (1, 28, 28), torch.Generator().manual_seed(0), patch=7, class_sep=10.0, radius=RADIUS)
    assert torch.allclose(noise.flatten(1).norm(dim=1), torch.full((500,), RADIUS))
    assert torch.equal(noise, noise[..., ::7, ::7].repeat_interleave(7, 2).repeat_interleave(7, 3))
    # the noise spans 16 dimensions only, so 500 points with shuffled labels are far from separable
    assert noise_fit(noise, y) == 1.0
    assert noise_fit(noise, y[torch.randperm(500, generator=torch.Generator().manual_seed(1))]) < 0.5


def test_classes_get_distinct_vertices():
    y = torch.arange(2000) % 10
    features = sn.make_classification(y, 10, 16, 10.0, torch.Generator().manual_seed(0))
    signs = torch.stack([features[y == k].mean(0).sign() for k in range(10)])
    assert len(torch.unique(signs, dim=0)) == 10


def test_poison_is_a_linear_shortcut(poisoned, effect):
    effect.check("sn linear fit", linear_fit_on_noise(poisoned, fashion_small()[0]))


def test_poison_lowers_clean_accuracy(poisoned, effect):
    effect.check("sn drop", accuracy_drop(poisoned, effect.seed))
