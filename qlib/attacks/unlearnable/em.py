"""EM: error-minimizing noise (Huang et al. 2021, "Unlearnable Examples: Making Personal Data Unexploitable",
ICLR), the first row of Table 5 (Section 4.3 of our paper).

EM solves the min-min problem  min_δ min_θ  E_(x,y) CE(f_θ(x + δ), y)  with ‖δ‖∞ ≤ ε: noise that makes the
training set *easy*, so a network fitting it learns the noise instead of the images. The loop alternates, as
the original ``perturbation.py`` (sample-wise) does:

- ``train_steps`` SGD steps of the surrogate (train mode) on mini-batches of (x + δ, y);
- one pass over the perturbed set in mini-batches of ``batch_size``: ``pgd_steps`` steps of signed-gradient
  *descent* on δ of CE(f(x + δ), y) (surrogate in eval mode), step ``step_size``, each projected onto the L∞
  ball of radius ``eps`` and onto x + δ ∈ [0, 1];
- stop when the surrogate's error on x + δ (eval mode, whole set) is below ``stop_error`` (0.01), or after
  ``max_rounds`` rounds, a safety cap that the original does not have. Rounds used, the error and loss after
  each round and the final surrogate's error on the clean images go into the provenance.

``classwise=True`` is the original's class-wise variant: one δ per class (C × image), applied to every image of
its class (each image then clipped to [0, 1]); each PGD step moves δ_c by the sign of the gradient summed over
that class's images in the mini-batch. The original instead runs the per-image steps from δ_c and sets δ_c to
the mean of the results (a mean of signs rather than the sign of the summed gradient), on a 20% subset with
stop error 0.1 (pass ``stop_error=0.1``).

Defaults are the original CIFAR-10 settings (the ``paper`` preset): ε = 8/255, step 0.8/255, 20 PGD steps,
10 surrogate steps per round, stop error 0.01, batch 512 (``perturbation.py``'s default), SGD lr 0.1, momentum
0.9, weight decay 5e-4, δ started at zero. Deviations: the surrogate's mini-batches are drawn at random
(the original cycles through the unshuffled set), without the original trainer's gradient-norm clipping (5.0);
the ``max_rounds`` cap; with ε_d < 1 the noise is made on the chosen images only (the original makes it for the
whole set and applies part of it). Fashion-MNIST's scaled-down settings are passed by the caller.

``min_min`` is also REM's loop (``rem.py``): its ``inner`` hook adds an adversarial ρ to x + δ before every
surrogate step and every δ step.

Work unit (``qlib.counters``, ``em_units``): images through the surrogate, forward and backward, in its SGD steps
and δ steps; the error checks (forward only) are not counted.
"""

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as nnf
from torch import nn

from ... import devices
from ...artifacts import tensor_digest
from ...counters import UNITS, settings
from ...data import Dataset
from ...poison import PoisonSet, poison_count
from ..base import ATTACKS, Needs
from .common import batch_rows, chosen, make_poison, minibatches, project_linf, sgd_steps, tally

# (model, x + δ, y, generator) -> ρ, a perturbation held fixed while the loss at x + δ + ρ is differentiated
Inner = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
MOMENTUM, WEIGHT_DECAY = 0.9, 5e-4  # the original surrogate's SGD


def poisoned(x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor, classwise: bool) -> torch.Tensor:
    """x + δ in [0, 1]: δ per image, or δ[y], one per class (clipped per image)."""
    return (x + (delta[y] if classwise else delta)).clamp(0, 1)


def project(delta: torch.Tensor, x: torch.Tensor, eps: float, classwise: bool) -> torch.Tensor:
    return delta.clamp(-eps, eps) if classwise else project_linf(delta, x, eps)


def descend(
    model: nn.Module,
    x,
    y,
    delta,
    *,
    eps: float,
    step_size: float,
    steps: int,
    classwise: bool,
    inner: Inner | None,
    g: torch.Generator,
    attack: str = "em",
) -> torch.Tensor:
    """``steps`` signed-gradient steps lowering CE(f(x + δ [+ ρ]), y) in δ, each projected (min over δ); each
    counts the images of ``x`` as ``attack``'s work."""
    for _ in range(steps):
        delta = delta.detach().requires_grad_(True)
        xp = poisoned(x, y, delta, classwise)
        if inner is not None:  # ρ held fixed (Danskin): the gradient at x + δ + ρ flows to δ unchanged
            xp = xp + inner(model, xp.detach(), y, g)
        (grad,) = torch.autograd.grad(nnf.cross_entropy(model(xp), y), delta)
        tally(attack, len(x))
        delta = project(delta.detach() - step_size * grad.sign(), x, eps, classwise)
    return delta.detach()


def surrogate_steps(
    model: nn.Module, opt, x, y, steps: int, batch_size: int, g: torch.Generator, inner: Inner | None, attack: str
) -> None:
    """``steps`` SGD steps on random mini-batches of (x + δ, y); with ``inner``, on x + δ + ρ (adversarial training).
    Each step counts its images as ``attack``'s work."""
    if inner is None:
        sgd_steps(model, opt, x, y, steps, batch_size, g, attack)
        return
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch_rows(len(x), batch_size),), generator=g).to(x.device)
        xb, yb = x[idx], y[idx]
        rho = inner(model, xb, yb, g)
        model.train()
        loss = nnf.cross_entropy(model(xb + rho), yb)
        tally(attack, len(idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@torch.no_grad()
def training_error(model: nn.Module, x, y, batch_size: int = 1000) -> tuple[float, float]:
    """(error, mean cross-entropy) of ``model`` in eval mode on (x, y)."""
    model.eval()
    wrong, loss = 0, 0.0
    for i in range(0, len(x), batch_size):
        logits = model(x[i : i + batch_size])
        wrong += (logits.argmax(1) != y[i : i + batch_size]).sum().item()
        loss += nnf.cross_entropy(logits, y[i : i + batch_size], reduction="sum").item()
    return wrong / len(x), loss / len(x)


def initial_noise(x, y, num_classes: int, eps: float, classwise: bool, random_start: bool, g) -> torch.Tensor:
    shape = (num_classes, *x.shape[1:]) if classwise else x.shape
    if not random_start:
        return torch.zeros(shape, device=x.device)
    delta = ((2 * torch.rand(shape, generator=g) - 1) * eps).to(x.device)
    return delta if classwise else project_linf(delta, x, eps)


def min_min(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    *,
    eps: float,
    step_size: float,
    pgd_steps: int,
    train_steps: int,
    stop_error: float | None,
    max_rounds: int,
    batch_size: int,
    lr: float,
    classwise: bool,
    random_start: bool,
    g: torch.Generator,
    attack: str,
    inner: Inner | None = None,
):
    """The min-min loop; returns (x + δ, record). ``stop_error=None`` runs all ``max_rounds`` rounds. Its
    surrogate and δ steps count as ``attack``'s work."""
    delta = initial_noise(x, y, num_classes, eps, classwise, random_start, g)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    errors, losses = [], []
    pgd = {
        "eps": eps,
        "step_size": step_size,
        "steps": pgd_steps,
        "classwise": classwise,
        "inner": inner,
        "g": g,
        "attack": attack,
    }
    for _ in range(max_rounds):
        surrogate_steps(model, opt, poisoned(x, y, delta, classwise), y, train_steps, batch_size, g, inner, attack)
        model.eval()
        for idx in minibatches(len(x), batch_size, g):
            idx = idx.to(x.device)
            if classwise:
                delta = descend(model, x[idx], y[idx], delta, **pgd)
            else:
                delta[idx] = descend(model, x[idx], y[idx], delta[idx], **pgd)
        error, loss = training_error(model, poisoned(x, y, delta, classwise), y)
        errors.append(error)
        losses.append(loss)
        if stop_error is not None and error < stop_error:
            break
    record = {
        "rounds": len(errors),
        "error": errors[-1],
        "errors": errors,
        "losses": losses,
        "clean_error": training_error(model, x, y)[0],
    }
    return poisoned(x, y, delta, classwise), record


def check_pgd(
    eps: float,
    step_size: float,
    pgd_steps: int,
    train_steps: int,
    max_rounds: int,
    batch_size: int,
    lr: float,
    stop_error: float | None,
) -> None:
    if (
        not (eps > 0 and step_size > 0 and lr > 0)
        or pgd_steps < 1
        or train_steps < 0
        or max_rounds < 1
        or batch_size < 1
    ):
        raise ValueError(
            f"bad arguments: eps={eps}, step_size={step_size}, lr={lr} must be positive; pgd_steps={pgd_steps}, "
            f"max_rounds={max_rounds}, batch_size={batch_size} at least 1; train_steps={train_steps} at least 0"
        )
    if stop_error is not None and not 0 < stop_error < 1:
        raise ValueError(f"stop_error={stop_error} must be in (0, 1), or None to run max_rounds rounds")


def run_min_min(
    clean: Dataset,
    eps_d: float,
    seed: int,
    model: nn.Module,
    *,
    attack: str,
    params: dict,
    device: str,
    inner: Inner | None,
    random_start: bool,
) -> PoisonSet:
    """Run ``min_min`` with ``params`` on the chosen images of ``clean`` on a copy of ``model``; the PoisonSet."""
    dev = devices.resolve(device)
    digest = tensor_digest(model.state_dict().values())
    idx = chosen(clean, eps_d, seed)
    # channels_last (values unchanged): the small CNN's forward and backward run about twice as fast on a CPU
    x, y = clean.x[idx].to(dev).contiguous(memory_format=torch.channels_last), clean.y[idx].to(dev)
    surrogate = copy.deepcopy(model).to(dev, memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(seed)
    knobs = {
        k: params[k]
        for k in (
            "eps",
            "step_size",
            "pgd_steps",
            "train_steps",
            "stop_error",
            "max_rounds",
            "batch_size",
            "lr",
            "classwise",
        )
    }
    x_poison, record = min_min(
        surrogate, x, y, clean.num_classes, random_start=random_start, g=g, attack=attack, inner=inner, **knobs
    )
    return make_poison(
        clean, idx, x_poison.contiguous(), eps_d, seed, attack, params, "linf", params["eps"], model=digest, **record
    )


@ATTACKS.register("em", Needs(model="fresh", replaces=True))
def em(
    clean: Dataset,
    eps_d: float,
    seed: int,
    *,
    model: nn.Module,
    eps: float = 8 / 255,
    step_size: float = 0.8 / 255,
    pgd_steps: int = 20,
    train_steps: int = 10,
    stop_error: float | None = 0.01,
    max_rounds: int = 100,
    batch_size: int = 512,
    lr: float = 0.1,
    classwise: bool = False,
    device: str = "cpu",
) -> PoisonSet:
    """EM on the round(ε_d·N) chosen images; ``model`` (a freshly initialised classifier) is copied, not changed."""
    check_pgd(eps, step_size, pgd_steps, train_steps, max_rounds, batch_size, lr, stop_error)
    params = {
        "eps": eps,
        "step_size": step_size,
        "pgd_steps": pgd_steps,
        "train_steps": train_steps,
        "stop_error": stop_error,
        "max_rounds": max_rounds,
        "batch_size": batch_size,
        "lr": lr,
        "classwise": classwise,
    }
    return run_min_min(
        clean, eps_d, seed, model, attack="em", params=params, device=device, inner=None, random_start=False
    )


def min_min_units(n: int, eps_d: float, s: dict, passes: int) -> int:
    """The images ``min_min`` puts through the surrogate, forward and backward, when it runs all ``max_rounds``
    rounds on the round(ε_d·N) chosen images: per round ``train_steps`` mini-batches and ``pgd_steps`` passes over
    the images, each image going through ``passes`` times (1; REM's inner ascent adds ``adv_steps``)."""
    k = poison_count(eps_d, n)
    return s["max_rounds"] * passes * (s["train_steps"] * batch_rows(k, s["batch_size"]) + s["pgd_steps"] * k)


@UNITS.register("em")
def em_units(n: int, eps_d: float, params: dict) -> int:
    """EM's unit: images through the surrogate, forward and backward (its SGD steps and δ steps). The count of a
    run of all ``max_rounds`` rounds, the most: a run that reaches ``stop_error`` stops earlier and counts less."""
    return min_min_units(n, eps_d, settings(em, params), passes=1)
