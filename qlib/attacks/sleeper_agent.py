"""Sleeper Agent (Souri, Fowl, Chellappa, Goldblum, Goldstein 2022): a hidden-trigger, clean-label backdoor built on
gradient matching (``qlib.attacks.gradient_matching``).

k = round(ε_d·N) training images of the target class t keep their label and are perturbed within ‖δ‖∞ ≤ ε so that
training on them pushes the weights the way reading triggered images of the source class s as t would. With the
surrogate's parameters θ and P the trigger's patch (``qlib.triggers.patch``),

    min_δ  1 − cos(∇_θ L(x_p + δ, t), ∇_θ Σ_{x ∈ X_s} L(P(x), t))

over ``sources`` training images X_s of class s, drawn from the seed. The poisons never show the trigger: it is
applied only at test time, to source-class test images (``Trigger.source_class``). As in the paper, the poisons are
the target-class images whose gradient ‖∇_θ L(x, t)‖ is largest (its data selection), and the crafting, its
schedule, restarts and differentiable augmentation are gradient matching's (``gradient_matching.craft``).

Quantization-aware (``scheme``, GM-Q's construction): both gradients are taken through the QAT network of
``scheme``, forward F and backward B (Eq. (10)), so a QAT victim is what the poisons are crafted against.

Deviations from the paper: the surrogate is not retrained during crafting (the paper retrains it 4 times, which
multiplies the cost by the training time); the trigger sits in a fixed corner (the paper places its patch at random
on each test image).
"""

import torch
from torch import nn

from .. import devices
from ..artifacts import tensor_digest
from ..counters import UNITS, settings
from ..data import Dataset
from ..poison import PoisonSet, poison_count
from ..quant import QuantScheme, approximate_gradient
from ..triggers import patch
from .base import ATTACKS, Needs
from .gradient_matching import TAU, craft, surrogate_network


def largest_gradients(net: nn.Module, x: torch.Tensor, target_class: int, k: int) -> torch.Tensor:
    """The places in ``x`` of the ``k`` images whose gradient ‖∇_θ L(x, t)‖ is largest (Sleeper Agent's selection),
    sorted."""
    norms = []
    y = torch.full((1,), target_class, dtype=torch.int64, device=x.device)
    for i in range(len(x)):
        grads = approximate_gradient(net, x[i : i + 1], y)
        norms.append(torch.sqrt(sum(g.pow(2).sum() for g in grads)).item())
    return torch.tensor(norms).argsort(descending=True)[:k].sort().values


@ATTACKS.register("sleeper_agent", Needs(model="trained", scheme="surrogate", replaces=True, trigger=True, version=1))
def sleeper_agent(
    clean: Dataset,
    eps_d: float,
    seed: int,
    *,
    model: nn.Module,
    target_class: int = 0,
    source_class: int = 1,
    size: int = 3,
    corner: str = "bottom-right",
    sources: int = 1000,
    eps: float = 16 / 255,
    steps: int = 250,
    restarts: int = 8,
    tau: float = TAU,
    augment: bool = True,
    batch_size: int = 512,
    scheme: QuantScheme | None = None,
    device: str = "auto",
) -> PoisonSet:
    """Poisons that plant ``trigger`` (a ``size``×``size`` patch) so that source-class images bearing it are read as
    ``target_class``: gradient matching toward the triggered source images' gradient, against ``model`` (a clean
    trained surrogate), through the QAT network of ``scheme`` when given."""
    trigger = patch(tuple(clean.x.shape[1:]), target_class, size, corner, source_class)
    if not 0 < eps <= 1 or steps < 1 or restarts < 1 or batch_size < 1 or sources < 1:
        raise ValueError(
            f"sleeper_agent eps={eps} must lie in (0, 1] and steps, restarts, batch_size, sources be ≥ 1 "
            f"(got {steps}, {restarts}, {batch_size}, {sources})"
        )
    if source_class == target_class or not 0 <= source_class < clean.num_classes:
        raise ValueError(f"source_class={source_class}: allowed is a class other than the target {target_class}")
    dev = devices.resolve(device)
    net = surrogate_network(model, scheme, clean, dev)
    g = torch.Generator().manual_seed(seed)
    members = (clean.y == target_class).nonzero().flatten()
    k = poison_count(eps_d, len(clean))
    if k > len(members):
        raise ValueError(f"eps_d={eps_d} buys {k} poisons but class {target_class} has only {len(members)} images")
    idx = members[largest_gradients(net, clean.x[members].to(dev), target_class, k)]
    source = (clean.y == source_class).nonzero().flatten()
    source = source[torch.randperm(len(source), generator=g)[:sources]]
    y_source = torch.full((len(source),), target_class, dtype=torch.int64, device=dev)
    target_grad = [t.detach() for t in approximate_gradient(net, trigger.apply(clean.x[source]).to(dev), y_source)]
    x0 = clean.x[idx].to(dev)
    y = torch.full((len(idx),), target_class, dtype=torch.int64, device=dev)
    best_delta, objective = craft(
        net, x0, y, target_grad, eps, steps, restarts, tau, augment, batch_size, seed, "attack/sleeper_agent"
    )
    params = {
        "target_class": target_class,
        "source_class": source_class,
        "size": size,
        "corner": corner,
        "sources": sources,
        "eps": eps,
        "steps": steps,
        "restarts": restarts,
        "tau": tau,
        "augment": augment,
        "batch_size": batch_size,
        "scheme": scheme.name if scheme is not None else None,
    }
    provenance = {
        "attack": "sleeper_agent",
        "params": params,
        "seed": seed,
        "labels": "kept",
        "mode": "replace",
        "norm": "linf",
        "eps": eps,
        "trigger": trigger.describe(),
        "surrogate": tensor_digest(model.state_dict().values()),
        "objective": objective,
    }
    x = (x0 + best_delta).clamp(0, 1).cpu()
    return PoisonSet(x, y.cpu(), idx, eps_d, provenance, trigger)


@UNITS.register("sleeper_agent")
def sleeper_agent_units(n: int, eps_d: float, params: dict) -> int:
    """Poisons through one step of the alignment objective, over ``steps`` × ``restarts`` (as gradient matching);
    the selection's gradients and the source gradient are not counted."""
    p = settings(sleeper_agent, params)
    return p["steps"] * p["restarts"] * poison_count(eps_d, n)
