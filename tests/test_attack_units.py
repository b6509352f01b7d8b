"""Each unlearnable-example attack counts its unit of work (``qlib.counters``) exactly as its ``UNITS`` predictor
says, on tiny problems; the predictor takes the attack's defaults for the settings it is not given."""

import pytest
from conftest import toy_dataset

from qlib import counters
from qlib.attacks import run_attack
from qlib.attacks.unlearnable import UNLEARNABLE
from qlib.counters import UNITS
from qlib.models import create_model

N = 36
NEEDS_MODEL = ("em", "rem", "tap", "dc")
# small settings; the ones a count depends on and that are left out take the attack's defaults (EM's batch 512,
# DC's batch 256, NTGA's 10 steps: all larger than these sets, or cheap here)
CASES = [
    ("em", 1.0, {"pgd_steps": 2, "train_steps": 3, "max_rounds": 2, "stop_error": None}),
    (
        "em",
        0.5,
        {"pgd_steps": 2, "train_steps": 3, "max_rounds": 2, "stop_error": None, "batch_size": 8, "classwise": True},
    ),
    ("rem", 1.0, {"pgd_steps": 2, "adv_steps": 2, "train_steps": 2, "max_rounds": 2, "batch_size": 16}),
    ("tap", 0.75, {"steps": 3, "restarts": 2, "batch_size": 16}),
    ("dc", 0.5, {"trials": 2, "steps": 3, "ae_width": 2}),
    ("dc", 1.0, {"trials": 1, "steps": 4, "batch_size": 16, "ae_width": 2}),
    ("sn", 1.0, {"patch": 2}),
    ("ar", 0.5, {"min_response": 1.0}),
    ("ntga", 1.0, {"block_size": 10, "val_size": 12}),
    ("ops", 0.25, {}),
]


def counted(name: str, eps_d: float, params: dict, channels: int = 1):
    """(the count of ``attack/<name>`` in one run on N toy 8×8 images, the poison)."""
    clean = toy_dataset(N, num_classes=4, size=8, channels=channels)
    model = {"model": create_model("cnn", clean, 0.25, seed=0)} if name in NEEDS_MODEL else {}
    with counters.counting() as c:
        poison = run_attack(name, clean, eps_d, seed=1, **model, **params)
    return c[f"attack/{name}"], poison


@pytest.mark.parametrize("name, eps_d, params", CASES, ids=[f"{n}-{e}" for n, e, _ in CASES])
def test_the_count_is_the_prediction(name, eps_d, params):
    count, _ = counted(name, eps_d, params, channels=3 if name == "ops" else 1)
    assert count > 0
    assert count == UNITS.get(name)(N, eps_d, params)


def test_every_table_5_attack_has_a_predictor():
    assert set(UNLEARNABLE) <= set(UNITS.names())


def test_an_early_stop_counts_the_rounds_it_ran():
    params = {"pgd_steps": 2, "train_steps": 3, "max_rounds": 4, "stop_error": 0.99, "batch_size": 16}
    count, poison = counted("em", 1.0, params)
    rounds = poison.provenance["rounds"]
    assert rounds < params["max_rounds"]
    assert count == UNITS.get("em")(N, 1.0, {**params, "max_rounds": rounds}) < UNITS.get("em")(N, 1.0, params)


def test_a_setting_the_attack_does_not_take_is_refused():
    with pytest.raises(TypeError):
        UNITS.get("tap")(N, 1.0, {"step": 3})
