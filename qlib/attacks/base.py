"""The common interface of every attack, and the checks every poison set must pass.

An attack is a function ``attack(clean, eps_d, seed, **params) -> PoisonSet`` registered by name. It
returns exactly round(ε_d·N) poisons in pixel space [0, 1], each started from a clean training image
whose index it records. Only x is optimized, so a poison keeps its source image's label, except for
attacks that relabel (label flip), which say so in ``provenance["labels"]``.
"""

import torch

from ..data import Dataset
from ..poison import PoisonSet, check_budget
from ..registry import Registry

ATTACKS = Registry("attack")
LABEL_RULES = ("kept", "flipped")  # flipped: y ← C − 1 − y


def poison_count(eps_d: float, n: int) -> int:
    """round(ε_d·N), the number of poisons a budget buys; at least one."""
    k = round(check_budget(eps_d) * n)
    if k < 1:
        raise ValueError(f"budget eps_d={eps_d} of {n} training images rounds to zero poisons")
    return k


def source_indices(n: int, k: int, seed: int) -> torch.Tensor:
    """``k`` distinct clean-image indices out of ``n``, drawn from ``seed``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]


def expected_labels(poison: PoisonSet, clean: Dataset) -> torch.Tensor:
    rule = poison.provenance.get("labels")
    if rule not in LABEL_RULES:
        raise ValueError(f"poison provenance labels={rule!r}; valid: {', '.join(LABEL_RULES)}")
    source = clean.y[poison.indices]
    return source if rule == "kept" else clean.num_classes - 1 - source


def validate(poison: PoisonSet, clean: Dataset) -> PoisonSet:
    """Check ``poison`` against the clean set it was made from; raise ValueError naming what is wrong."""
    n, k = len(clean), poison_count(poison.eps_d, len(clean))
    if len(poison) != k:
        raise ValueError(f"{len(poison)} poisons for eps_d={poison.eps_d} of {n} images; expected round(eps_d·N) = {k}")
    if poison.x.shape[1:] != clean.x.shape[1:]:
        raise ValueError(f"poison images are {tuple(poison.x.shape[1:])}, clean images {tuple(clean.x.shape[1:])}")
    if len(poison) and (poison.indices.min() < 0 or poison.indices.max() >= n):
        raise ValueError(f"poison source indices leave [0, {n})")
    if len(torch.unique(poison.indices)) != len(poison):
        raise ValueError("poison source indices repeat: each poison must start from its own clean image")
    for field in ("attack", "params", "seed"):
        if field not in poison.provenance:
            raise ValueError(f"poison provenance lacks {field!r}")
    if not torch.equal(poison.y, expected_labels(poison, clean)):
        raise ValueError(f"poison labels do not follow the {poison.provenance['labels']!r} rule for their source images")
    return poison


def run_attack(name: str, clean: Dataset, eps_d: float, seed: int, **params) -> PoisonSet:
    """Look up attack ``name``, run it, and validate what it returns."""
    attack = ATTACKS.get(name)
    check_budget(eps_d)
    return validate(attack(clean, eps_d, seed, **params), clean)
