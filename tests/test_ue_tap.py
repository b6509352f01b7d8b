"""TAP (targeted adversarial poisoning): contract, the surrogate is left alone, the poisons move the surrogate's
predictions toward (y + 1) mod C, and end-to-end on real Fashion-MNIST."""

import functools

import pytest
import torch
from ue_checks import E2E, accuracy_drop, check_contract, fashion_small

from qlib.attacks import run_attack
from qlib.attacks.unlearnable import tap  # noqa: F401  (registers "tap")
from qlib.models import create_model
from qlib.train import fit

# the cpu preset's Fashion-MNIST settings: ε = 32/255 (4× CIFAR's: at 8/255 the surrogate is robust, 3% of
# the poisons reach y + 1), 10 steps of 2.5·ε/10, one restart
FASHION = {"eps": 32 / 255, "steps": 10, "step_size": 8 / 255, "restarts": 1, "batch_size": 256}
SMALL = {"steps": 3, "restarts": 2, "batch_size": 64}  # eps: the default 8/255
# the end-to-end statistic (tests/effects.py) needs an effect large against its spread over seeds and CPUs
END_TO_END = {**FASHION, "eps": 0.3, "step_size": 0.075}


@functools.cache
def trained_surrogate(seed):
    """The clean model TAP attacks: the small CNN trained from ``seed`` on the end-to-end training set."""
    train = fashion_small()[0]
    model = create_model("cnn", train, E2E["width"], seed=seed)
    fit(
        model,
        train,
        epochs=E2E["epochs"],
        lr=E2E["lr"],
        batch_size=E2E["batch_size"],
        seed=seed,
        progress=False,
        device="cpu",
    )
    return model.eval()


@pytest.fixture(scope="module")
def surrogate():
    return trained_surrogate(0)


@pytest.fixture(scope="module")
def poisoned(effect_seed):
    """(the surrogate of the seed, TAP's poison against it)."""
    model = trained_surrogate(effect_seed)
    return model, run_attack("tap", fashion_small()[0], 1.0, seed=effect_seed, model=model, **END_TO_END)


def test_contract_and_the_surrogate_is_left_alone(surrogate):
    before = {k: v.clone() for k, v in surrogate.state_dict().items()}
    check_contract("tap", fashion_small(200, 100)[0], "linf", 8 / 255, model=surrogate, **SMALL)
    assert all(torch.equal(before[k], v) for k, v in surrogate.state_dict().items())
    assert not surrogate.training


def test_step_size_defaults_to_the_originals_tau_times_eps(surrogate):
    p = run_attack("tap", fashion_small(20, 10)[0], 1.0, seed=0, model=surrogate, steps=1, restarts=1)
    assert p.provenance["params"]["step_size"] == pytest.approx(0.05 * 8 / 255)


def test_poisons_are_classified_as_the_next_class(poisoned, effect):
    train, (surrogate, poisoned) = fashion_small()[0], poisoned
    target = (train.y + 1) % train.num_classes
    with torch.no_grad():
        on_poison = (surrogate(poisoned.x).argmax(1) == target).float().mean().item()
        on_clean = (surrogate(train.x).argmax(1) == target).float().mean().item()
    assert on_poison == pytest.approx(poisoned.provenance["target_success"])
    assert on_clean == pytest.approx(poisoned.provenance["clean_target_rate"])
    effect.check("tap surrogate clean rate", on_clean)
    effect.check("tap surrogate fooled", on_poison)


def test_poison_lowers_clean_accuracy(poisoned, effect):
    effect.check("tap drop", accuracy_drop(poisoned[1], effect.seed))
