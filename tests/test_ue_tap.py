"""TAP (targeted adversarial poisoning): contract, the surrogate is left alone, the poisons move the surrogate's
predictions toward (y + 1) mod C, and end-to-end on real Fashion-MNIST."""

import pytest
import torch
from ue_checks import CLEARLY_LOWER, E2E, accuracy_after_training, check_contract, fashion_small

from qlib.attacks import run_attack
from qlib.attacks.unlearnable import tap  # noqa: F401  (registers "tap")
from qlib.models import create_model
from qlib.train import fit

# the cpu preset's Fashion-MNIST settings: ε = 32/255 (4× CIFAR's: at 8/255 the surrogate is robust, 3% of
# the poisons reach y + 1), 10 steps of 2.5·ε/10, one restart
FASHION = {"eps": 32 / 255, "steps": 10, "step_size": 8 / 255, "restarts": 1, "batch_size": 256}
SMALL = {"steps": 3, "restarts": 2, "batch_size": 64}  # eps: the default 8/255


@pytest.fixture(scope="module")
def surrogate(fashion_e2e):
    """The clean model TAP attacks: the small CNN trained on the end-to-end training set."""
    train, _, _ = fashion_e2e
    model = create_model("cnn", train, E2E["width"], seed=0)
    fit(model, train, epochs=E2E["epochs"], lr=E2E["lr"], batch_size=E2E["batch_size"], seed=0, progress=False,
        device="cpu")
    return model.eval()


@pytest.fixture(scope="module")
def poisoned(fashion_e2e, surrogate):
    return run_attack("tap", fashion_e2e[0], 1.0, seed=0, model=surrogate, **FASHION)


def test_contract_and_the_surrogate_is_left_alone(surrogate):
    before = {k: v.clone() for k, v in surrogate.state_dict().items()}
    check_contract("tap", fashion_small(200, 100)[0], "linf", 8 / 255, model=surrogate, **SMALL)
    assert all(torch.equal(before[k], v) for k, v in surrogate.state_dict().items())
    assert not surrogate.training


def test_step_size_defaults_to_the_originals_tau_times_eps(surrogate):
    p = run_attack("tap", fashion_small(20, 10)[0], 1.0, seed=0, model=surrogate, steps=1, restarts=1)
    assert p.provenance["params"]["step_size"] == pytest.approx(0.05 * 8 / 255)


def test_poisons_are_classified_as_the_next_class(poisoned, fashion_e2e, surrogate):
    train = fashion_e2e[0]
    target = (train.y + 1) % train.num_classes
    with torch.no_grad():
        on_poison = (surrogate(poisoned.x).argmax(1) == target).float().mean().item()
        on_clean = (surrogate(train.x).argmax(1) == target).float().mean().item()
    assert on_poison == pytest.approx(poisoned.provenance["target_success"])
    assert on_clean == pytest.approx(poisoned.provenance["clean_target_rate"])
    assert on_clean <= 0.05 and on_poison >= 0.3  # measured: 0.001 and 0.5


def test_poison_lowers_clean_accuracy(poisoned, fashion_e2e):
    train, test, clean_acc = fashion_e2e
    assert accuracy_after_training(train, test, poisoned) <= clean_acc - CLEARLY_LOWER
