"""Gradient matching (Witches' Brew, Geiping et al. 2021): the targeted attack of Section 4.3.

A clean-label poison: k = round(ε_d·N) training images of the adversarial class y_adv are perturbed, within
‖δ‖∞ ≤ ε and x + δ ∈ [0, 1], so that training on them pushes the weights the way misclassifying one target
test image x_t as y_adv would. With θ the victim's parameters (all of them, one vector) and the poisons'
own labels y_adv,

    min_δ  1 − cos(∇_θ L(x_p + δ, y_adv), ∇_θ L(x_t, y_adv))

(Witches' Brew's alignment objective, the "passenger loss" of its official code). As in the official code
(JonasGeiping/poisoning-gradient-matching): the surrogate is in evaluation mode; the target gradient is computed
once; δ starts uniform in the ε-ball; every step draws a differentiable random crop and flip of each poison; the
poisons are processed in batches, each batch's cosine loss adding to the gradient of δ; the step is signed Adam
(Adam on sign ∇_δ) with learning rate τ·ε (τ = 0.1), divided by 10 after M/2.667, M/1.6 and M/1.142 of the M
steps; after each step δ is projected onto the ε-ball and the valid image range; the attack restarts R times and
keeps the restart with the lowest loss. The poisons *replace* their clean images (provenance ``mode: "replace"``).

Quantization-aware (``scheme``, beyond the paper, the targeted analogue of GC-Q, Eq. (5)): both gradients are
taken through the QAT network of ``scheme``, forward F (w* = F(w)), backward B (``quant.approximate_gradient``).
A ``model`` that already holds quantized layers (a QAT-trained surrogate) is used as it is; a full-precision
one is quantized first, with activation scales calibrated on the clean training set (PAQ, as GC-Q does).

Deviations from the official code: δ is drawn uniformly in the ε-ball (the official default is ε·N(0, 1)
clipped); the restart is chosen by the loss of its final poisons without augmentation (the official by the
loss of its last step), and the recorded initial loss is likewise without augmentation; pixels are in [0, 1]
(the official ε is in 0-255 units of normalised images, the same ball). ``batch_size`` 512 is its ``--pbatch``.
"""

import copy

import torch
from torch import nn

from .. import devices
from ..artifacts import tensor_digest
from ..counters import UNITS, count, settings
from ..data import Dataset
from ..poison import PoisonSet, poison_count
from ..quant import QuantScheme, Twin, approximate_gradient, calibrate, quantize_modules
from ..train import augment_batch
from .base import ATTACKS, Needs

TAU = 0.1  # the signed-Adam step relative to ε
DECAYS = (2.667, 1.6, 1.142)  # the step is divided by 10 after M/2.667, M/1.6 and M/1.142 steps


def adversarial_sources(clean: Dataset, eps_d: float, adversarial_class: int, seed: int) -> torch.Tensor:
    """The sorted indices of the round(ε_d·N) poisons, drawn from ``seed`` among the adversarial class's images."""
    if not (isinstance(adversarial_class, int) and 0 <= adversarial_class < clean.num_classes):
        raise ValueError(
            f"adversarial_class={adversarial_class!r} is not a class of {clean.name} (0-{clean.num_classes - 1})"
        )
    k = poison_count(eps_d, len(clean))
    members = (clean.y == adversarial_class).nonzero().flatten()
    if k > len(members):
        raise ValueError(
            f"eps_d={eps_d} buys {k} poisons but class {adversarial_class} has only {len(members)} training images"
        )
    pick = torch.randperm(len(members), generator=torch.Generator().manual_seed(seed))[:k]
    return members[pick].sort().values


def surrogate_network(model: nn.Module, scheme: QuantScheme | None, clean: Dataset, device: torch.device) -> nn.Module:
    """The network whose gradients are matched, a copy in evaluation mode: of ``model``, or with ``scheme`` of its
    QAT network (``model``'s own if it is already quantized, else quantized here and calibrated on ``clean``)."""
    quantized = any(isinstance(m, Twin) for m in model.modules())
    if scheme is None and quantized:
        raise ValueError("model holds quantized layers: pass the scheme it was quantized with")
    if scheme is not None and scheme.is_fp:
        raise ValueError("scheme 'fp' is full precision: leave scheme=None for the quantization-oblivious attack")
    net = copy.deepcopy(model) if scheme is None or quantized else quantize_modules(model, scheme)
    net = net.to(device).eval()
    if scheme is not None and not quantized:
        calibrate(net, clean)
    for p in net.parameters():
        p.requires_grad_(True)
    return net


def cosine_loss(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, target_grad: list[torch.Tensor], target_norm: torch.Tensor
) -> torch.Tensor:
    """1 − cos(∇_θ L(x, y), target_grad), the cosine over all parameters as one vector (differentiable in x)."""
    grads = approximate_gradient(net, x, y, create_graph=True)
    dot = sum((g * t).sum() for g, t in zip(grads, target_grad))
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    return 1 - dot / (norm * target_norm)


def milestones(steps: int) -> list[int]:
    """The steps after which the step size is divided by 10 (the official M // d); none at step 0 for tiny M."""
    return [m for m in (int(steps / d) for d in DECAYS) if m > 0]


def craft(
    net: nn.Module,
    x0: torch.Tensor,
    y: torch.Tensor,
    target_grad: list[torch.Tensor],
    eps: float,
    steps: int,
    restarts: int,
    tau: float,
    augment: bool,
    batch_size: int,
    seed: int,
    unit: str,
) -> tuple[torch.Tensor, dict]:
    """The perturbations δ of ``x0`` (labels ``y``) that align the poisons' gradient with ``target_grad`` (the module
    docstring's objective, its schedule and restarts), each step counted as ``unit``. Returns (the best restart's δ,
    the provenance's "objective": the best restart's initial and final loss, unaugmented, and its curve, which restart
    it was and every restart's final loss)."""
    target_norm = torch.sqrt(sum(t.pow(2).sum() for t in target_grad))
    batches = [slice(i, i + batch_size) for i in range(0, len(x0), batch_size)]
    g = torch.Generator().manual_seed(seed)

    def losses(delta, augmented):
        """Each batch's cosine loss, weighted by its share of the poisons; with ``augmented`` a fresh crop and flip."""
        for b in batches:
            x = x0[b] + delta[b]
            yield cosine_loss(net, augment_batch(x, g) if augmented else x, y[b], target_grad, target_norm) * (
                len(x) / len(x0)
            )

    best_delta, trials = None, []
    for _ in range(restarts):
        delta = ((torch.rand(x0.shape, generator=g) * 2 - 1) * eps).to(x0.device)
        delta = ((x0 + delta).clamp(0, 1) - x0).requires_grad_(True)
        opt = torch.optim.Adam([delta], lr=tau * eps)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones(steps), gamma=0.1)
        initial, curve = sum(loss.item() for loss in losses(delta.detach(), False)), []
        for _ in range(steps):
            grad, value = torch.zeros_like(delta), 0.0
            for loss in losses(delta, augment):
                grad += torch.autograd.grad(loss, delta)[0]
                value += loss.item()
            count(unit, len(x0))
            curve.append(value)
            delta.grad = grad.sign()
            opt.step()
            sched.step()
            with torch.no_grad():
                delta.copy_((x0 + delta.clamp(-eps, eps)).clamp(0, 1) - x0)
        final = sum(loss.item() for loss in losses(delta.detach(), False))
        if not trials or final < min(t["final"] for t in trials):
            best_delta, chosen = delta.detach().clone(), len(trials)
        trials.append({"initial": initial, "final": final, "curve": curve})  # initial and final: no augmentation
    objective = {
        "initial": trials[chosen]["initial"],
        "final": trials[chosen]["final"],
        "steps": steps,
        "restart": chosen,
        "restart_finals": [t["final"] for t in trials],
        "curve": trials[chosen]["curve"],
    }
    return best_delta, objective


@ATTACKS.register("gradient_matching", Needs(model="trained", scheme="surrogate", target=True, replaces=True))
def gradient_matching(
    clean: Dataset,
    eps_d: float,
    seed: int,
    *,
    model: nn.Module,
    target_image: torch.Tensor,
    target_index: int,
    adversarial_class: int,
    eps: float = 16 / 255,
    steps: int = 250,
    restarts: int = 8,
    tau: float = TAU,
    augment: bool = True,
    batch_size: int = 512,
    scheme: QuantScheme | None = None,
    device: str = "auto",
) -> PoisonSet:
    """Poisons that make training misclassify ``target_image`` (test image ``target_index``) as
    ``adversarial_class``: gradient matching against ``model`` (a clean trained surrogate), through the QAT
    network of ``scheme`` when given. Returns a ``PoisonSet`` that records the target and the class."""
    if not 0 < eps <= 1:
        raise ValueError(f"gradient matching eps={eps} must lie in (0, 1] (an L-inf radius in pixel units)")
    if steps < 1 or restarts < 1 or batch_size < 1:
        raise ValueError(f"steps, restarts and batch_size must be ≥ 1, got {steps}, {restarts}, {batch_size}")
    if target_image.shape != clean.x.shape[1:]:
        raise ValueError(f"target image is {tuple(target_image.shape)}, training images {tuple(clean.x.shape[1:])}")
    dev = devices.resolve(device)
    idx = adversarial_sources(clean, eps_d, adversarial_class, seed)
    net = surrogate_network(model, scheme, clean, dev)
    x0 = clean.x[idx].to(dev)
    y = torch.full((len(idx),), adversarial_class, dtype=torch.int64, device=dev)
    target_grad = [g.detach() for g in approximate_gradient(net, target_image[None].to(dev), y[:1])]
    best_delta, objective = craft(
        net, x0, y, target_grad, eps, steps, restarts, tau, augment, batch_size, seed, "attack/gradient_matching"
    )
    params = {
        "eps": eps,
        "steps": steps,
        "restarts": restarts,
        "tau": tau,
        "augment": augment,
        "batch_size": batch_size,
        "scheme": scheme.name if scheme is not None else None,
    }
    provenance = {
        "attack": "gradient_matching",
        "params": params,
        "seed": seed,
        "labels": "kept",
        "mode": "replace",
        "norm": "linf",
        "eps": eps,
        "target_index": int(target_index),
        "adversarial_class": adversarial_class,
        "target_digest": tensor_digest([target_image]),
        "surrogate": tensor_digest(model.state_dict().values()),
        "objective": objective,
    }
    x = (x0 + best_delta).clamp(0, 1).cpu()
    return PoisonSet(x, y.cpu(), idx, eps_d, provenance)


@UNITS.register("gradient_matching")
def gradient_matching_units(n: int, eps_d: float, params: dict) -> int:
    """Poisons through one step of the alignment objective (a forward, a backward and a double backward each),
    over ``steps`` × ``restarts``; the restarts' unaugmented first and last evaluations are not counted."""
    p = settings(gradient_matching, params)
    return p["steps"] * p["restarts"] * poison_count(eps_d, n)
