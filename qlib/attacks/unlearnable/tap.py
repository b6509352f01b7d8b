"""TAP: targeted adversarial poisoning (Fowl et al. 2021, "Adversarial Examples Make Strong Poisons"), a row of
Table 5 (Section 4.3).

Every training image x of class y is replaced by a targeted adversarial example of a clean, trained surrogate f
(the caller's model), pushed toward class (y + 1) mod C:

    δ = argmin_{‖δ‖∞ ≤ ε, x + δ ∈ [0, 1]} CE(f(x + δ), (y + 1) mod C)

by signed gradient steps (PGD), the official code's strongest recipe (``--recipe targeted --attackoptim PGD``,
lhfowl/adversarial_poisons). As there, the surrogate stays in evaluation mode, δ starts from ε·N(0, 1) clipped to
the ball, the step is τ·ε with τ = 0.05 (``--tau``; 0.4/255 at ε = 8/255, 250 steps), the images are attacked in
batches of 512 and the attack is restarted 8 times, keeping the restart whose final mean targeted loss is lowest.
The surrogate is the caller's (the official one trains a ResNet-18 for 40 epochs on the clean data).

Deviations from the official code:
- No differentiable data augmentation during the attack (the official default, ``--paugment``, random
  shifts and flips inside the attack loop): δ is crafted on the un-augmented images.
- The steps are run batch by batch (all ``steps`` for one batch, then the next) rather than step by step over
  the whole set; with the surrogate frozen in evaluation mode and no augmentation the result is the same.
- The restart is chosen by the targeted loss of the final poisons, not by the loss summed during the last step.

Scaled down (the caller passes it; the ``cpu`` preset on Fashion-MNIST): fewer steps with a proportionally larger
step (10 steps of 2.5·ε/10), one restart, and a larger radius, since at 8/255 the small CNN surrogate is robust
(measured: 3% of the poisons reach y + 1, after 10 or after 100 steps).

Work unit (``qlib.counters``, ``tap_units``): images through the surrogate, forward and backward, in the PGD steps;
the scoring of each restart (forward only) is not counted.
"""

import copy

import torch
import torch.nn.functional as nnf
from torch import nn

from ... import devices
from ...counters import UNITS, settings
from ...data import Dataset
from ...poison import PoisonSet, poison_count
from ..base import ATTACKS, Needs
from .common import chosen, make_poison, project_linf, tally

TAU = 0.05  # the official step size relative to ε (``--tau``)


def next_class(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The official label permutation: y → (y + 1) mod C."""
    return (y + 1) % num_classes


def targeted_pgd(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    delta: torch.Tensor,
    eps: float,
    steps: int,
    step_size: float,
) -> torch.Tensor:
    """``steps`` signed descent steps on CE(model(x + δ), target), each projected onto the L∞ ball and [0, 1] and
    counting the images of ``x`` as TAP's work."""
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = nnf.cross_entropy(model(x + delta), target)
        (grad,) = torch.autograd.grad(loss, delta)
        tally("tap", len(x))
        delta = project_linf(delta.detach() - step_size * grad.sign(), x, eps)
    return delta.detach()


@torch.no_grad()
def targeted_scores(model: nn.Module, x: torch.Tensor, target: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """(mean CE toward ``target``, fraction of ``x`` that ``model`` classifies as ``target``)."""
    loss, hits = 0.0, 0
    for i in range(0, len(x), batch_size):
        out = model(x[i : i + batch_size])
        loss += nnf.cross_entropy(out, target[i : i + batch_size], reduction="sum").item()
        hits += (out.argmax(1) == target[i : i + batch_size]).sum().item()
    return loss / len(x), hits / len(x)


def attack_once(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    steps: int,
    step_size: float,
    batch_size: int,
    g: torch.Generator,
) -> torch.Tensor:
    """One restart: the poisoned images, from the official random start ε·N(0, 1) clipped to the ball."""
    noise = torch.randn(x.shape, generator=g).to(x.device, x.dtype, memory_format=torch.channels_last)
    delta = project_linf(eps * noise, x, eps)
    for i in range(0, len(x), batch_size):
        sl = slice(i, i + batch_size)
        delta[sl] = targeted_pgd(model, x[sl], target[sl], delta[sl], eps, steps, step_size)
    return x + delta


@ATTACKS.register("tap", Needs(model="trained", replaces=True))
def tap(
    clean: Dataset,
    eps_d: float,
    seed: int,
    *,
    model: nn.Module,
    eps: float = 8 / 255,
    steps: int = 250,
    step_size: float | None = None,
    restarts: int = 8,
    batch_size: int = 512,
    device: str = "cpu",
) -> PoisonSet:
    """Targeted adversarial poisons of ``model`` (a clean, trained surrogate) toward (y + 1) mod C, L∞ radius
    ``eps``; ``step_size`` defaults to the official τ·ε with τ = 0.05."""
    step_size = TAU * eps if step_size is None else step_size
    if not eps > 0 or not step_size > 0 or steps < 1 or restarts < 1 or batch_size < 1:
        raise ValueError(
            f"bad TAP arguments: eps={eps}, step_size={step_size}, steps={steps}, restarts={restarts}, "
            f"batch_size={batch_size}"
        )
    dev = devices.resolve(device)
    # channels_last: same values, measured 1.4-2x faster for the small CNN on one CPU core (as in train.fit)
    surrogate = copy.deepcopy(model).to(dev, memory_format=torch.channels_last).eval()
    surrogate.requires_grad_(False)  # only δ needs gradients
    idx = chosen(clean, eps_d, seed)
    x = clean.x[idx].to(dev).contiguous(memory_format=torch.channels_last)
    target = next_class(clean.y[idx], clean.num_classes).to(dev)
    g = torch.Generator().manual_seed(seed)
    best, best_loss, best_success = None, float("inf"), 0.0
    for _ in range(restarts):
        x_poison = attack_once(surrogate, x, target, eps, steps, step_size, batch_size, g)
        loss, success = targeted_scores(surrogate, x_poison, target, batch_size)
        if loss < best_loss:
            best, best_loss, best_success = x_poison, loss, success
    _, clean_rate = targeted_scores(surrogate, x, target, batch_size)
    params = {"eps": eps, "steps": steps, "step_size": step_size, "restarts": restarts, "batch_size": batch_size}
    return make_poison(
        clean,
        idx,
        best,
        eps_d,
        seed,
        "tap",
        params,
        "linf",
        eps,
        target_loss=best_loss,
        target_success=best_success,
        clean_target_rate=clean_rate,
    )


@UNITS.register("tap")
def tap_units(n: int, eps_d: float, params: dict) -> int:
    """TAP's unit: images through the surrogate, forward and backward: ``steps`` PGD steps of each of the
    round(ε_d·N) chosen images in each of ``restarts`` restarts."""
    s = settings(tap, params)
    return s["restarts"] * s["steps"] * poison_count(eps_d, n)
