"""Every unlearnable-example method on CIFAR-shaped RGB images (3×32×32, the ``paper`` preset's shape): the
contract holds and the RGB-specific parts behave as the originals (OPS searches 8 colours, AR filters each
channel, SN's radius follows d = 3072)."""

import math

import pytest
import torch
from conftest import toy_dataset

from qlib.attacks import run_attack
from qlib.models import create_model
from qlib.poison import perturbation_norms

RGB = toy_dataset(n=40, size=32, channels=3)
L_INF = 8 / 255
TINY = {  # each method's CIFAR-10 budget, with the fewest steps
    "em": {"pgd_steps": 1, "train_steps": 1, "max_rounds": 1, "batch_size": 20},
    "rem": {"pgd_steps": 1, "adv_steps": 1, "train_steps": 1, "max_rounds": 1, "batch_size": 20},
    "tap": {"steps": 2, "restarts": 1, "batch_size": 20},
    "dc": {"trials": 1, "steps": 2, "batch_size": 20, "ae_width": 4},
    "ntga": {"steps": 1, "val_size": 20, "block_size": 20},
    "sn": {},
    "ar": {},
    "ops": {},
}
NORMS = {
    "em": ("linf", L_INF),
    "rem": ("linf", L_INF),
    "tap": ("linf", L_INF),
    "dc": ("linf", 0.032),
    "ntga": ("linf", L_INF),
    "sn": ("l2", math.sqrt(3 * 32 * 32) * 6 / 255),
    "ar": ("l2", 1.0),
    "ops": ("l0", 1),
}


@pytest.mark.parametrize("name", list(TINY))
def test_rgb_contract(name):
    params = dict(TINY[name])
    if name in ("em", "rem", "tap", "dc"):
        params["model"] = create_model("cnn", RGB, 0.25, seed=0).eval()
    p = run_attack(name, RGB, 1.0, seed=0, **params)
    norm, eps = NORMS[name]
    assert p.provenance["norm"] == norm and p.provenance["eps"] == pytest.approx(eps)
    assert perturbation_norms(p, RGB, norm).max() <= eps + 1e-5
    assert p.x.shape == RGB.x.shape and p.x.min() >= 0 and p.x.max() <= 1 and torch.equal(p.y, RGB.y)
    assert (p.x - RGB.x).abs().amax() > 0


def test_ops_sets_one_rgb_pixel_per_class_to_a_binary_colour():
    p = run_attack("ops", RGB, 1.0, seed=0)
    for c in range(RGB.num_classes):
        changed = (p.x[RGB.y == c] != RGB.x[RGB.y == c]).any(1)  # N_c × H × W
        assert changed.any(0).sum() == 1, "one position per class"
        row, col = changed.any(0).nonzero()[0]
        colour = p.x[RGB.y == c][:, :, row, col]
        assert torch.all((colour == 0) | (colour == 1)) and torch.all(colour == colour[0]), "one binary colour"
