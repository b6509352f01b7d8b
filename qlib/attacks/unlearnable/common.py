"""What the unlearnable-example attacks (Section 4.3, Table 5) share.

Unlearnable examples modify the training set itself: the poison *replaces* the images it was made from
(provenance ``mode: "replace"``), and with ε_d = 1, the paper's setting, every training image is perturbed.
Each attack bounds its perturbation δ = x_poison − x in its own norm (L∞, L2 or L0, in pixel space [0, 1]);
the norm and radius go into the provenance, and ``qlib.poison.validate`` checks every image against them.
Labels are never changed.

Each attack counts its unit of work where it does it (``tally``, ``qlib.counters``) and registers in
``qlib.counters.UNITS`` the function that predicts that count (``qlib.counters.settings`` fills its defaults): images
through the network, forward and backward, for the attacks that differentiate one (EM, REM, TAP, DC, NTGA); images given
noise for the model-free ones (SN, AR, OPS).
"""

import torch
from torch import nn

from ...counters import count
from ...data import Dataset
from ...poison import PoisonSet, poison_count
from ..base import source_indices

UNLEARNABLE = ("em", "tap", "dc", "sn", "ar", "ntga", "rem", "ops")  # Table 5's rows, in the paper's order


def chosen(clean: Dataset, eps_d: float, seed: int) -> torch.Tensor:
    """The sorted indices of the round(ε_d·N) training images to perturb (all of them when ε_d = 1)."""
    n = len(clean)
    return source_indices(n, poison_count(eps_d, n), seed).sort().values


def tally(attack: str, n: int) -> None:
    """Count ``n`` units of ``attack``'s work, as ``attack/<name>`` (``qlib.counters``)."""
    count(f"attack/{attack}", n)


def batch_rows(n: int, batch_size: int) -> int:
    """The size of a mini-batch of ``batch_size`` drawn from ``n`` items: all of them when fewer."""
    return min(batch_size, n)


def project_linf(delta: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """δ projected onto the L∞ ball of radius ``eps`` and onto x + δ ∈ [0, 1]."""
    return (x + delta.clamp(-eps, eps)).clamp(0, 1) - x


def scale_l2(noise: torch.Tensor, radius: float) -> torch.Tensor:
    """Each sample of ``noise`` rescaled to L2 norm ``radius``."""
    norms = noise.flatten(1).norm(dim=1).clamp_min(1e-12)
    return noise * (radius / norms).view(-1, *[1] * (noise.ndim - 1))


def minibatches(n: int, batch_size: int, g: torch.Generator):
    """Index tensors of one pass over ``n`` items in a random order drawn from ``g`` (a CPU generator)."""
    perm = torch.randperm(n, generator=g)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def sgd_steps(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    batch_size: int,
    g: torch.Generator,
    attack: str,
) -> None:
    """``steps`` optimizer steps of the mean cross-entropy on random mini-batches of (x, y), in train mode;
    each counts its images as ``attack``'s work."""
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch_rows(len(x), batch_size),), generator=g).to(x.device)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        tally(attack, len(idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def make_poison(
    clean: Dataset,
    idx: torch.Tensor,
    x_poison: torch.Tensor,
    eps_d: float,
    seed: int,
    attack: str,
    params: dict,
    norm: str,
    eps: float,
    **extra,
) -> PoisonSet:
    """The PoisonSet that replaces images ``idx`` of ``clean`` by ``x_poison`` (clamped to [0, 1]), labels kept.

    ``params`` (JSON) and ``extra`` (e.g. the attack's final objective) go into the provenance."""
    provenance = {
        "attack": attack,
        "params": params,
        "seed": seed,
        "labels": "kept",
        "mode": "replace",
        "norm": norm,
        "eps": float(eps),
        **extra,
    }
    return PoisonSet(x_poison.detach().clamp(0, 1).cpu(), clean.y[idx].clone(), idx.clone(), eps_d, provenance)
