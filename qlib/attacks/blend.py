"""Blend (Chen, Liu, Li, Lu, Song 2017): ε_d·N training images of classes other than the target, drawn from the
seed, are blended with a noise pattern at a constant α, x' = (1 − α)·x + α·t (``qlib.triggers.blend``), and relabelled
to the target class, in their own places in μ. The perturbation is bounded by α in L∞."""

import torch

from ..counters import UNITS
from ..data import Dataset
from ..poison import PoisonSet
from ..triggers import blend as blend_trigger
from .badnets import relabelled
from .base import ATTACKS, Needs


@ATTACKS.register("blend", Needs(replaces=True, device=False, trigger=True))
def blend(clean: Dataset, eps_d: float, seed: int, target_class: int = 0, alpha: float = 0.2) -> PoisonSet:
    """The pattern is drawn from the seed, so each seed's backdoor has its own trigger."""
    trigger = blend_trigger(tuple(clean.x.shape[1:]), target_class, alpha, seed)
    idx = relabelled(clean, eps_d, seed, target_class)
    provenance = {
        "attack": "blend",
        "params": {"target_class": target_class, "alpha": alpha},
        "seed": seed,
        "labels": "target",
        "mode": "replace",
        "norm": "linf",
        "eps": alpha,
        "trigger": trigger.describe(),
    }
    y = torch.full((len(idx),), target_class, dtype=torch.int64)
    return PoisonSet(trigger.apply(clean.x[idx]), y, idx, eps_d, provenance, trigger)


@UNITS.register("blend")
def blend_units(n: int, eps_d: float, params: dict) -> int:
    """None: blending passes nothing through a network."""
    return 0
