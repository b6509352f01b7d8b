import math

import pytest
import torch
import torch.nn.functional as nnf
from conftest import toy_dataset

from qlib.attacks.gradpc import gradpc, paq, squared_distance
from qlib.models import create_model
from qlib.quant import QConv2d, parse_scheme, quantized_state
from qlib.train import fit


def train_toy(seed):
    d = toy_dataset(n=160, size=28)
    model = create_model("cnn", d, width=0.25, seed=seed)
    fit(model, d, epochs=3, lr=0.05, batch_size=32, seed=seed, device="cpu", progress=False)
    return model.eval(), d


@pytest.fixture(scope="module")
def trained():
    return train_toy(0)


@pytest.fixture(scope="module")
def trained_seeded(effect_seed):
    return train_toy(effect_seed)


def loss(model, d):
    with torch.no_grad():
        return nnf.cross_entropy(model.eval()(d.x), d.y).item()


@pytest.mark.parametrize("eps_w", [0.05, 0.5])
def test_budget_is_met(trained, eps_w):
    model, d = trained
    target = gradpc(model, d, eps_w=eps_w, batch_size=32)
    eps = squared_distance(list(target.parameters()), list(model.parameters()))
    assert eps == pytest.approx(eps_w, rel=1e-3)
    assert all(torch.equal(a, b) for a, b in zip(target.buffers(), model.buffers()))  # BN statistics untouched


def test_the_loss_rises(trained_seeded, effect):
    """At the paper's ε_w = 0.5 the training loss rises by 18-47 (measured over seeds); the statistic is log10 of
    the rise, whose spread is small against its distance to log10 0.1. (At ε_w = 0.05 the rise was 0.14-2.3: too
    spread for a bound that holds on every CPU.)"""
    model, d = trained_seeded
    rise = loss(gradpc(model, d, eps_w=0.5, batch_size=32), d) - loss(model, d)
    effect.check("gradpc log10 loss rise at eps_w 0.5", math.log10(max(rise, 1e-12)))


def test_deterministic_and_leaves_the_clean_model_alone(trained):
    model, d = trained
    before = [p.clone() for p in model.parameters()]
    a, b = gradpc(model, d, eps_w=0.1, seed=1), gradpc(model, d, eps_w=0.1, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert all(torch.equal(x, y) for x, y in zip(before, model.parameters()))


def test_bad_budget_is_rejected(trained):
    model, d = trained
    with pytest.raises(ValueError, match="eps_w=0"):
        gradpc(model, d, eps_w=0)


def test_paq_makes_the_target_discrete(trained):
    model, d = trained
    target = gradpc(model, d, eps_w=0.1)
    q = paq(target, parse_scheme("4W"))
    conv = next(m for m in q.modules() if isinstance(m, QConv2d))
    assert len(torch.unique(quantized_state(q)["5.weight"])) <= 15
    assert torch.equal(conv.weight, target.get_submodule("5").weight)  # latent ŵ kept; w* = P_Q(ŵ) in forward
    with pytest.raises(ValueError, match="weights only"):
        paq(target, parse_scheme("4W4A"))
