"""OPS (one-pixel shortcut): contract, end-to-end on real Fashion-MNIST, the search against a brute-force
loop in the original's form, and one shared pixel and colour per class."""

import numpy as np
import pytest
import torch
from conftest import toy_dataset
from ue_checks import accuracy_drop, check_contract, fashion_small, linear_fit_on_noise

from qlib.attacks import run_attack
from qlib.attacks.unlearnable import ops  # noqa: F401  (registers "ops")


@pytest.fixture(scope="module")
def poisoned(effect_seed):
    return run_attack("ops", fashion_small()[0], 1.0, seed=effect_seed)


def brute_force(x: np.ndarray, y: np.ndarray, num_classes: int):
    """The original's pixel_search: per class, np.mean / np.std of |c − x| over images × channels, pairs of
    earlier classes excluded, the first maximum in (row, col, colour) order."""
    _, channels, h, w = x.shape
    taken, choice = [], {}
    for k in range(num_classes):
        images = x[y == k]
        best, best_score = None, -np.inf
        for row in range(h):
            for col in range(w):
                for j in range(2**channels):
                    colour = np.array([(j >> (channels - 1 - ch)) & 1 for ch in range(channels)], dtype=float)
                    distance = np.abs(colour - images[:, :, row, col])
                    score = distance.mean() / distance.std()
                    if (row, col, j) not in taken and score > best_score:
                        best, best_score = (row, col, j), score
        taken.append(best)
        choice[k] = best
    return choice


def test_contract():
    check_contract("ops", fashion_small(200, 100)[0], "l0", 1)


def test_search_is_the_brute_force_argmax():
    clean = toy_dataset(60, num_classes=3, size=6, channels=3)
    assert ops.search(clean.x, clean.y, 3) == brute_force(clean.x.double().numpy(), clean.y.numpy(), 3)
    images = clean.x[clean.y == 0].double()
    distance = np.abs(1.0 - images[:, :, 2, 3].numpy())  # colour white, index 7
    assert ops.scores(images)[2, 3, 7].item() == pytest.approx(distance.mean() / distance.std(), rel=1e-12)


def test_constant_pixels_score_zero_or_infinity():
    x = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    x[:, :, 0, 0] = 0
    s = ops.scores(x)
    assert s[0, 0, 0] == 0 and s[0, 0, 1] == torch.inf  # black changes nothing; white is a perfect shortcut


def test_each_class_shares_one_pixel_and_colour():
    clean = toy_dataset(80, num_classes=4, size=8, channels=3)
    poison = run_attack("ops", clean, 1.0, seed=0)
    pixels = poison.provenance["pixels"]
    assert [p["class"] for p in pixels] == [0, 1, 2, 3]
    assert len({(p["row"], p["col"], *p["colour"]) for p in pixels}) == 4
    for p in pixels:
        members = poison.y == p["class"]
        delta = poison.x[members] - clean.x[members]
        delta[:, :, p["row"], p["col"]] = 0
        assert torch.all(delta == 0), "only the chosen pixel changes"
        assert torch.all(poison.x[members, :, p["row"], p["col"]] == torch.tensor(p["colour"], dtype=torch.float32))


def test_poison_is_a_linear_shortcut(poisoned, effect):
    effect.check("ops linear fit", linear_fit_on_noise(poisoned, fashion_small()[0]))


def test_poison_lowers_clean_accuracy(poisoned, effect):
    """The mean over 8 victims: one victim's accuracy on this poison varies by ±5 points (measured)."""
    effect.check("ops drop", accuracy_drop(poisoned, effect.seed, victims=8))
