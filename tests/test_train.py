import pytest
import torch
from conftest import toy_dataset

from qlib.models import create_model
from qlib.train import augment_batch, evaluate, fit


def train_once(seed, augment=False, epochs=2):
    d = toy_dataset(n=160, size=28)
    model = create_model("cnn", d, width=0.25, seed=seed)
    history = fit(
        model, d, d, epochs=epochs, lr=0.05, batch_size=32, augment=augment, seed=seed, device="cpu", progress=False
    )
    return model, history


def test_same_seed_is_bit_identical_on_cpu():
    """Two runs in one process on one machine: the same kernels give the same bits. Across CPUs they need not
    (tests/README.md)."""
    a, ha = train_once(0, augment=True)
    b, hb = train_once(0, augment=True)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
    c, _ = train_once(1, augment=True)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_fit_learns_a_learnable_problem(effect):
    d = toy_dataset(n=160, size=28)
    model = create_model("cnn", d, width=0.25, seed=effect.seed)
    before = evaluate(model, d)
    history = fit(model, d, d, epochs=4, lr=0.05, batch_size=32, seed=effect.seed, device="cpu", progress=False)
    effect.check("fit toy accuracy", history[-1]["test_acc"])
    effect.check("fit toy accuracy gain", history[-1]["test_acc"] - before)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["lr"] < 1e-9  # the cosine schedule ends at zero


def test_evaluate_counts_correct_predictions_and_restores_mode():
    d = toy_dataset(n=10, size=28)
    model = create_model("cnn", d, width=0.25).train()
    logits = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 4))
    with torch.no_grad():
        logits[1].weight.zero_()
        logits[1].bias.copy_(torch.tensor([0.0, 0.0, 1.0, 0.0]))  # always predicts class 2
    assert evaluate(logits, d, batch_size=3) == 2 / 10  # labels 0,1,2,3,0,1,2,3,0,1
    evaluate(model, d)
    assert model.training


def test_augment_keeps_shape_range_and_content():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28)
    out = augment_batch(x, g)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)
    # a crop shifts by at most the padding and a flip mirrors: some sample must equal a plain (un)flipped shift
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(200, 1, 1, 1)
    out = augment_batch(x, torch.Generator().manual_seed(1))
    assert any(torch.equal(o, x[0]) for o in out) and any(torch.equal(o, x[0].flip(-1)) for o in out)


def test_bad_arguments_are_rejected():
    d = toy_dataset(n=10, size=28)
    with pytest.raises(ValueError, match="epochs"):
        fit(create_model("cnn", d), d, epochs=0, lr=0.1, batch_size=4, progress=False)
