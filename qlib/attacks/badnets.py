"""BadNets (Gu, Dolan-Gavitt, Garg 2017): ε_d·N training images of classes other than the target, drawn from the
seed, carry the trigger (``qlib.triggers.patch``: a size×size checkerboard in a corner, binary mask) and are relabelled
to the target class, in their own places in μ (``mode: replace``). The perturbation is the patch: an L0 budget of
size² pixel positions."""

import torch

from ..counters import UNITS
from ..data import Dataset
from ..poison import PoisonSet, poison_count
from ..triggers import patch
from .base import ATTACKS, Needs


def relabelled(clean: Dataset, eps_d: float, seed: int, target_class: int) -> torch.Tensor:
    """round(ε_d·N) distinct images whose class is not ``target_class``, drawn from ``seed`` (all-to-one)."""
    others = (clean.y != target_class).nonzero().flatten()
    k = poison_count(eps_d, len(clean))
    if k > len(others):
        raise ValueError(
            f"budget eps_d={eps_d} asks for {k} poisons, but only {len(others)} images lie outside the target class"
        )
    return others[torch.randperm(len(others), generator=torch.Generator().manual_seed(seed))[:k]]


@ATTACKS.register("badnets", Needs(replaces=True, device=False, trigger=True))
def badnets(
    clean: Dataset, eps_d: float, seed: int, target_class: int = 0, size: int = 3, corner: str = "bottom-right"
) -> PoisonSet:
    trigger = patch(tuple(clean.x.shape[1:]), target_class, size, corner)
    idx = relabelled(clean, eps_d, seed, target_class)
    provenance = {
        "attack": "badnets",
        "params": {"target_class": target_class, "size": size, "corner": corner},
        "seed": seed,
        "labels": "target",
        "mode": "replace",
        "norm": "l0",
        "eps": size * size,
        "trigger": trigger.describe(),
    }
    y = torch.full((len(idx),), target_class, dtype=torch.int64)
    return PoisonSet(trigger.apply(clean.x[idx]), y, idx, eps_d, provenance, trigger)


@UNITS.register("badnets")
def badnets_units(n: int, eps_d: float, params: dict) -> int:
    """None: stamping a patch passes nothing through a network."""
    return 0
