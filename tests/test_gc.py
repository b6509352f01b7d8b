"""GC on a convex problem where the target is reachable, and GC's interface."""

import pytest
import torch
import torch.nn.functional as nnf
from conftest import blobs, exact_logistic_regression
from torch import nn

from qlib.attacks import run_attack
from qlib.attacks.gc import cancel_objective, clean_gradient, gradient_parameters
from qlib.data import Dataset


def logistic_regression(data: Dataset) -> nn.Module:
    return exact_logistic_regression(data.x.double(), data.y).float()


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_gc_reaches_a_reachable_target_on_logistic_regression(effect):
    clean = blobs()
    # a known poison set that keeps labels and moves images: its retrained parameters are a reachable target
    g = torch.Generator().manual_seed(1 + effect.seed)
    idx = torch.randperm(len(clean), generator=g)[:45]
    known = clean.replace(torch.cat([clean.x, (1 - clean.x[idx])]), torch.cat([clean.y, clean.y[idx]]))
    w_c, target = logistic_regression(clean), logistic_regression(known)
    poison = run_attack(
        "gc", clean, 0.15, seed=1 + effect.seed, target=target, epochs=600, lr=0.02, threshold=1e-4, device="cpu"
    )
    objective = poison.provenance["objective"]
    effect.check("gc convex objective ratio", objective["final"] / objective["initial"])
    retrained = logistic_regression(clean.replace(torch.cat([clean.x, poison.x]), torch.cat([clean.y, poison.y])))
    before, after = (flat(w_c) - flat(target)).norm(), (flat(retrained) - flat(target)).norm()
    effect.check("gc convex distance ratio", after / before)  # retrained on μ+ν_GC, relative to the clean optimum


def test_chunked_objective_and_gradient_match_one_pass():
    clean = blobs(n=60)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    params = gradient_parameters(model, "all")
    g_clean = clean_gradient(model, params, clean, batch_size=7)
    x, y = clean.x[:10].clone().requires_grad_(True), clean.y[:10]
    loss = nnf.cross_entropy(model(x), y, reduction="sum")
    G = [a + b for a, b in zip(g_clean, torch.autograd.grad(loss, params, create_graph=True))]
    value = 0.5 * sum((t**2).sum() for t in G)
    (expected,) = torch.autograd.grad(value, x)
    for chunk in (1, 3, 10):
        got_value, got_grad = cancel_objective(model, params, g_clean, clean.x[:10].clone(), y, chunk)
        assert got_value == pytest.approx(value.item(), rel=1e-5)
        assert torch.allclose(got_grad, expected, atol=1e-5)
        assert cancel_objective(model, params, g_clean, clean.x[:10].clone(), y, chunk, with_grad=False) == (
            got_value,
            None,
        )


def test_gc_is_deterministic_stays_in_range_and_validates():
    clean = blobs(n=100)
    target = logistic_regression(clean)
    with torch.no_grad():
        target[1].bias += torch.tensor([1.0, 0.0, -1.0])  # far from the clean optimum, so the images must move
    a = run_attack("gc", clean, 0.1, seed=0, target=target, epochs=20, lr=0.05, threshold=0, device="cpu")
    b = run_attack("gc", clean, 0.1, seed=0, target=target, epochs=20, lr=0.05, threshold=0, device="cpu")
    assert torch.equal(a.x, b.x) and len(a) == 10 and a.x.min() >= 0 and a.x.max() <= 1
    assert torch.equal(a.y, clean.y[a.indices])
    assert a.provenance["objective"]["steps"] == 20
    assert a.provenance["objective"]["final"] < 0.9 * a.provenance["objective"]["initial"]
    first = run_attack("gc", clean, 0.1, seed=0, target=target, epochs=3, layers="first", device="cpu")
    assert first.provenance["params"]["layers"] == "first"


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"optimizer": "lbfgs"}, "unknown optimizer"),
        ({"layers": "last"}, "unknown layers"),
        ({"epochs": 0}, "must be positive"),
        ({"lr": -1.0}, "must be positive"),
    ],
)
def test_gc_bad_arguments(bad, message):
    clean = blobs(n=30)
    with pytest.raises(ValueError, match=message):
        run_attack("gc", clean, 0.1, seed=0, target=nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), device="cpu", **bad)
