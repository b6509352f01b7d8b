"""AR (autoregressive perturbations): contract, end-to-end on real Fashion-MNIST, the recursion against the
original's raster loop, and stable, per-class distinct processes that a matching filter tells apart."""

import pytest
import torch
from ue_checks import accuracy_drop, check_contract, fashion_small

from qlib.attacks import run_attack
from qlib.attacks.unlearnable import ar  # noqa: F401  (registers "ar")

FASHION = {"eps": 3.0, "min_response": 5.0}  # the cpu preset (one channel, 28×28)
# the end-to-end statistic (tests/effects.py) needs an effect large against its spread over seeds and CPUs:
# twice the cpu preset's radius
END_TO_END = {**FASHION, "eps": 6.0}
SEARCH = {"max_norm": 50.0, "min_response": 5.0, "trials": 3, "max_candidates": 1_000_000}


@pytest.fixture(scope="module")
def poisoned(effect_seed):
    return run_attack("ar", fashion_small()[0], 1.0, seed=effect_seed, **END_TO_END)


def filter_classifier(coefficients, noise):
    """The original's "perfect model": the class whose matching filter answers least."""
    return torch.stack([ar.response(b, noise) for b in coefficients], 1).argmin(1)


def test_contract():
    # at the default (CIFAR-10) radius, L2 = 1
    check_contract("ar", fashion_small(200, 100)[0], "l2", 1.0, min_response=FASHION["min_response"])


def test_recursion_is_the_originals_raster_loop():
    g = torch.Generator().manual_seed(0)
    b, start = ar.random_coefficients(2, 3, g), torch.randn(2, 3, 9, 8, generator=g)
    expected = start.clone()
    for n in range(2):
        for c in range(3):
            for i in range(7):
                for j in range(6):
                    expected[n, c, i + 2, j + 2] = (expected[n, c, i : i + 3, j : j + 3] * b[n, c]).sum()
    assert torch.allclose(ar.generate(b, start), expected, atol=1e-5)


def test_processes_are_stable_and_distinct():
    coefficients = ar.find_coefficients(10, 1, (28, 28), 4, 0, **SEARCH)
    assert torch.all(coefficients[..., 2, 2] == 0)
    assert torch.allclose(coefficients.sum((2, 3)), torch.ones(10, 1))
    y = torch.arange(1000) % 10
    raw = ar.sample(coefficients[y], (28, 28), 4, torch.Generator().manual_seed(1))
    norms = raw.flatten(1).norm(dim=1)
    # bounded on fresh samples too (3 trials per candidate leave a tail: the largest here is 66)
    assert torch.isfinite(norms).all() and norms.max() <= 2 * SEARCH["max_norm"]
    noise = ar.scale_l2(raw, 1.0)
    own = torch.stack([ar.response(coefficients[k], noise[y == k]) for k in range(10)])
    assert own.max() < 1e-3  # each class's filter annihilates its own process
    assert torch.equal(filter_classifier(coefficients, noise), y)


def test_poison_is_a_filter_shortcut(poisoned):
    """A linear classifier cannot see AR noise (zero mean in every class); its matching filters can, after clipping."""
    delta = poisoned.x - fashion_small()[0].x
    coefficients = torch.tensor(poisoned.provenance["coefficients"])
    assert (filter_classifier(coefficients, delta) == poisoned.y).float().mean() >= 0.95


def test_poison_lowers_clean_accuracy(poisoned, effect):
    """The mean over 6 victims: with 3 the drop varied from 35 to 45 points between seeds and kernels (measured)."""
    effect.check("ar drop", accuracy_drop(poisoned, effect.seed, victims=6))
