"""REM: robust error-minimizing noise (Fu et al. 2022, "Robust Unlearnable Examples: Protecting Data Privacy
Against Adversarial Learning", ICLR), the REM row of Table 5 (Section 4.3 of our paper).

REM solves the min-min-max problem  min_δ min_θ E max_ρ CE(f_θ(x + δ + ρ), y),  ‖δ‖∞ ≤ ε (defensive noise),
‖ρ‖∞ ≤ ε_a < ε (adversarial noise): noise that stays error-minimizing for a model trained adversarially
within ε_a. It runs EM's min-min loop (``em.min_min``) with an inner maximization: before every surrogate step
and every δ step, ρ is found by ``adv_steps`` steps of signed-gradient *ascent* from a uniform random start in
the ε_a ball (surrogate in eval mode), projected onto that ball and onto [0, 1]. The surrogate then trains on
x + δ + ρ (adversarial training), and δ descends the loss at x + δ + ρ with ρ held fixed, as the original does.

Defaults are the original CIFAR-10 settings (``scripts/cifar10/gen_rem.sh``, the ``paper`` preset): ε = 8/255
with 10 steps of 1.6/255, ε_a = 4/255 with 10 steps of 0.8/255, δ started uniformly in the ε ball, batch 128,
SGD lr 0.1, momentum 0.9, weight decay 5e-4.

Stop rule: the original has no error criterion; it trains the surrogate for a fixed 5000 steps, refreshing the
noise of each step's batch before the step, then regenerates all the noise with the final surrogate. Here a
round is ``train_steps`` surrogate steps followed by one δ pass over the whole set (ending, like the original,
with noise made against the final surrogate), and all ``max_rounds`` rounds run (``stop_error=None``). The
defaults, 13 rounds of 391 steps (one CIFAR-10 epoch at batch 128), give the original's ≈5000 surrogate steps
and one noise refresh per image per epoch of surrogate training.

Deviations: δ is carried over between rounds (the original restarts it from random each refresh); the
original's learning-rate decay (×0.1 every 2000 steps) is dropped; the original trains the surrogate on
augmented images and averages δ's gradient over 5 random crops/flips (expectation over transformations); here
there is no augmentation, as our victims train without it. Fashion-MNIST's scaled-down settings are passed by
the caller.

Work unit (``qlib.counters``, ``rem_units``): images through the surrogate, forward and backward: EM's SGD and δ
steps and every step of the inner ascent.
"""

import torch
import torch.nn.functional as nnf
from torch import nn

from ...counters import UNITS, settings
from ...data import Dataset
from ...poison import PoisonSet
from ..base import ATTACKS, Needs
from .common import project_linf, tally
from .em import check_pgd, min_min_units, run_min_min


def pgd_ascent(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator, *, eps: float, step_size: float, steps: int
) -> torch.Tensor:
    """ρ in the L∞ ball of radius ``eps`` (x + ρ in [0, 1]) raising CE(f(x + ρ), y): ``steps`` signed steps from a
    random start, each counting the images of ``x`` as REM's work."""
    model.eval()
    rho = project_linf(((2 * torch.rand(x.shape, generator=g) - 1) * eps).to(x), x, eps)
    for _ in range(steps):
        rho.requires_grad_(True)
        (grad,) = torch.autograd.grad(nnf.cross_entropy(model(x + rho), y), rho)
        tally("rem", len(x))
        rho = project_linf(rho.detach() + step_size * grad.sign(), x, eps)
    return rho.detach()


@ATTACKS.register("rem", Needs(model="fresh", replaces=True))
def rem(
    clean: Dataset,
    eps_d: float,
    seed: int,
    *,
    model: nn.Module,
    eps: float = 8 / 255,
    step_size: float = 1.6 / 255,
    pgd_steps: int = 10,
    adv_eps: float = 4 / 255,
    adv_step_size: float = 0.8 / 255,
    adv_steps: int = 10,
    train_steps: int = 391,
    stop_error: float | None = None,
    max_rounds: int = 13,
    batch_size: int = 128,
    lr: float = 0.1,
    classwise: bool = False,
    device: str = "cpu",
) -> PoisonSet:
    """REM on the round(ε_d·N) chosen images; ``model`` (a freshly initialised classifier) is copied, not changed."""
    check_pgd(eps, step_size, pgd_steps, train_steps, max_rounds, batch_size, lr, stop_error)
    if not 0 < adv_eps < eps:
        raise ValueError(
            f"REM needs an adversarial radius adv_eps={adv_eps:.6g} in (0, eps={eps:.6g}): the defensive "
            "noise must be larger than the adversarial noise it has to survive"
        )
    if not adv_step_size > 0 or adv_steps < 1:
        raise ValueError(f"adv_step_size={adv_step_size} must be positive and adv_steps={adv_steps} at least 1")
    params = {
        "eps": eps,
        "step_size": step_size,
        "pgd_steps": pgd_steps,
        "adv_eps": adv_eps,
        "adv_step_size": adv_step_size,
        "adv_steps": adv_steps,
        "train_steps": train_steps,
        "stop_error": stop_error,
        "max_rounds": max_rounds,
        "batch_size": batch_size,
        "lr": lr,
        "classwise": classwise,
    }

    def inner(model, x, y, g):
        return pgd_ascent(model, x, y, g, eps=adv_eps, step_size=adv_step_size, steps=adv_steps)

    return run_min_min(
        clean, eps_d, seed, model, attack="rem", params=params, device=device, inner=inner, random_start=True
    )


@UNITS.register("rem")
def rem_units(n: int, eps_d: float, params: dict) -> int:
    """REM's unit: images through the surrogate, forward and backward (its SGD steps, δ steps and the
    ``adv_steps`` ascent steps before each). The count of a run of all ``max_rounds`` rounds, the most: a run
    given a ``stop_error`` that it reaches stops earlier and counts less."""
    s = settings(rem, params)
    return min_min_units(n, eps_d, s, passes=s["adv_steps"] + 1)
