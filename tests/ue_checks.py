"""Shared checks of the unlearnable-example attacks: the contract every method must keep, the end-to-end
accuracy check on a small real subset, and the linear-shortcut check."""

import functools

import torch
import torch.nn.functional as nnf
from conftest import toy_dataset

from qlib import data
from qlib.attacks import run_attack
from qlib.models import create_model
from qlib.poison import perturbation_norms
from qlib.train import evaluate, fit

E2E = {"train": 1000, "test": 1000, "epochs": 8, "width": 0.5, "lr": 0.05, "batch_size": 64}
MAX_VICTIMS = 8  # victims of seed s: 8s, 8s + 1, …; one victim's accuracy on a poison varies by ±5 points or more


@functools.cache
def fashion_small(n_train=E2E["train"], n_test=E2E["test"]):
    """A class-balanced subset of the real Fashion-MNIST (the data ``make test`` installs)."""
    return data.load("fashion-mnist", "train").subset(n_train, seed=0), data.load("fashion-mnist", "test").subset(
        n_test, seed=0
    )


def check_contract(name, clean, norm, eps, /, **params):
    """Run attack ``name`` twice on ``clean`` (ε_d = 1): every image is perturbed within ``eps`` in ``norm``,
    stays in [0, 1], keeps its label, the result is deterministic and differs from the clean images.
    Returns the poison."""
    p = run_attack(name, clean, 1.0, seed=0, **params)
    q = run_attack(name, clean, 1.0, seed=0, **params)
    assert len(p) == len(clean) and torch.equal(p.indices, torch.arange(len(clean)))
    assert p.provenance["mode"] == "replace" and p.provenance["norm"] == norm
    assert abs(p.provenance["eps"] - eps) < 1e-9
    assert perturbation_norms(p, clean, norm).max() <= eps + 1e-5
    assert p.x.min() >= 0 and p.x.max() <= 1
    assert torch.equal(p.y, clean.y)
    assert torch.equal(p.x, q.x), "same seed, different poison"
    assert (p.x - clean.x).abs().amax() > 0, "the attack changed nothing"
    return p


def check_contract_on_toy(name, **params):
    """``check_contract`` at the default L∞ 8/255 on a 120-image toy set with a fresh small CNN as ``model``,
    which the attack must leave unchanged. Returns the poison."""
    clean = toy_dataset(120)
    model = create_model("cnn", clean, 0.25, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    p = check_contract(name, clean, "linf", 8 / 255, model=model, **params)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the caller's model changed"
    return p


def accuracy_after_training(train, test, poison=None, seed=0):
    """Clean-test accuracy of the small CNN trained (E2E settings) on ``train``, or on it as ``poison`` alters it."""
    train_set = train if poison is None else data.mix(train, poison)
    model = create_model("cnn", train, E2E["width"], seed)
    fit(
        model,
        train_set,
        epochs=E2E["epochs"],
        lr=E2E["lr"],
        batch_size=E2E["batch_size"],
        seed=seed,
        progress=False,
        device="cpu",
    )
    return evaluate(model, test)


@functools.cache
def clean_accuracy(victim: int) -> float:
    """Clean-test accuracy of the small CNN trained from seed ``victim`` on the clean end-to-end subset."""
    return accuracy_after_training(*fashion_small(), seed=victim)


def accuracy_drop(poison, seed: int, victims: int = 3) -> float:
    """The end-to-end statistic of an unlearnable example: the clean-test accuracy of the small CNN trained on the
    clean subset minus that of the same CNN trained on it as ``poison`` alters it, each the mean over ``victims``
    victims of ``seed`` (the same initialisations and batch orders for both)."""
    assert victims <= MAX_VICTIMS
    train, test = fashion_small()
    seeds = range(MAX_VICTIMS * seed, MAX_VICTIMS * seed + victims)
    return sum(clean_accuracy(v) - accuracy_after_training(train, test, poison, v) for v in seeds) / victims


def linear_fit_on_noise(poison, clean, steps=300, lr=0.5):
    """Training accuracy of a linear classifier (full-batch gradient descent) on the perturbations δ alone."""
    delta = (poison.x - clean.x[poison.indices]).flatten(1)
    delta = delta / delta.norm(dim=1, keepdim=True).clamp_min(1e-12)
    w = torch.zeros(delta.shape[1], clean.num_classes, requires_grad=True)
    b = torch.zeros(clean.num_classes, requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=lr)
    for _ in range(steps):
        loss = nnf.cross_entropy(delta @ w + b, poison.y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return ((delta @ w + b).argmax(1) == poison.y).float().mean().item()
