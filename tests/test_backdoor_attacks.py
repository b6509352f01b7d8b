"""The backdoor attacks against their papers' mechanisms, on 2,000 Fashion-MNIST images: BadNets' and Blend's
trigger is learnt (triggered test images read as the target, far more often than by a model trained without the
poisons), and Sleeper Agent's crafting aligns the poisons' gradient with the triggered source images' and pulls
them toward the target when a model descends on the poisons. The margins are wide: the values measured under every
kernel family (ATEN_CPU_CAPABILITY avx2, avx512, default) at 1 and 2 threads, on this project's AMD EPYC, are in
each test's docstring."""

import copy

import pytest
import torch
import torch.nn.functional as nnf

from qlib.attacks import run_attack
from qlib.data import SOURCES, _find, load
from qlib.models import create_model
from qlib.train import fit, predict
from qlib.triggers import success

pytestmark = pytest.mark.skipif(
    _find(SOURCES.get("fashion-mnist"), "train") is None, reason="Fashion-MNIST not installed"
)


@pytest.fixture(scope="module")
def fashion():
    return load("fashion-mnist", "train").subset(2000, seed=0), load("fashion-mnist", "test").subset(1000, seed=0)


def trained(train, seed=0):
    model = create_model("cnn", train, 0.5, seed)
    fit(model, train, epochs=4, lr=0.05, batch_size=64, seed=seed, progress=False, device="cpu")
    return model


@pytest.mark.parametrize("attack, params", [("badnets", {}), ("blend", {"alpha": 0.2})])
def test_the_trigger_is_learnt(fashion, attack, params):
    """5% poisons (100 images) relabelled to class 0. Measured under avx2, avx512 and default at 1 and 2 threads
    : BadNets' ASR 0.999-1.000 poisoned, 0.007-0.010 clean; Blend's
     0.946-0.962 and 0.017-0.031."""
    from qlib.data import mix

    train, test = fashion
    nu = run_attack(attack, train, 0.05, 0, target_class=0, **params)
    triggered = nu.trigger.apply(test.x)
    poisoned = success(predict(trained(mix(train, nu)), triggered), test.y, nu.trigger)
    clean = success(predict(trained(train), triggered), test.y, nu.trigger)
    assert poisoned["asr"] > 0.8 and clean["asr"] < 0.3, (poisoned, clean)


def test_sleeper_agent_aligns_the_poisons_with_the_triggered_source_and_pulls_it_to_the_target(fashion):
    """10% poisons from class 0 (target), source class 1, ε = 0.3, 30 steps. Measured under avx2, avx512 and
    default at 1 and 2 threads: the alignment loss falls to 0.053-0.061 of its start; after 30 SGD steps on the
    poisons, the triggered source images' loss toward the target is 0.001 of what the same steps on the unperturbed
    images give (they are read as the target already, so their gradients are small)."""
    train, _ = fashion
    surrogate = trained(train)
    nu = run_attack(
        "sleeper_agent", train, 0.1, 0, model=surrogate, target_class=0, source_class=1, sources=200,
        eps=0.3, steps=30, restarts=1, augment=False, device="cpu",
    )  # fmt: skip
    objective = nu.provenance["objective"]
    assert objective["final"] < 0.5 * objective["initial"], objective
    assert (train.y[nu.indices] == 0).all() and (nu.y == 0).all()  # clean label: target-class images, kept labels
    assert (nu.x - train.x[nu.indices]).abs().max() <= 0.3 + 1e-6
    assert not torch.equal(nu.trigger.apply(nu.x), nu.x) and nu.trigger.source_class == 1  # the trigger is hidden

    source = train.x[train.y == 1][:200]

    def source_loss_after_descent(x):
        m = copy.deepcopy(surrogate).eval()
        opt = torch.optim.SGD(m.parameters(), lr=0.01)
        for _ in range(30):
            opt.zero_grad()
            nnf.cross_entropy(m(x), nu.y).backward()
            opt.step()
        with torch.no_grad():
            return nnf.cross_entropy(m(nu.trigger.apply(source)), torch.zeros(len(source), dtype=torch.long)).item()

    ratio = source_loss_after_descent(nu.x) / source_loss_after_descent(train.x[nu.indices])
    assert ratio < 0.5, ratio
