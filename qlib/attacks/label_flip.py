"""Label flip (Section 4.1): copies of a seeded random ε_d fraction of μ with y ← C − 1 − y."""

from ..counters import UNITS
from ..data import Dataset
from ..poison import PoisonSet, poison_count
from .base import ATTACKS, Needs, source_indices


@ATTACKS.register("label_flip", Needs(device=False))
def label_flip(clean: Dataset, eps_d: float, seed: int) -> PoisonSet:
    """The paper's rule y ← 10 − y on labels 1..10 is y ← C − 1 − y on 0-based labels."""
    idx = source_indices(len(clean), poison_count(eps_d, len(clean)), seed)
    provenance = {"attack": "label_flip", "params": {}, "seed": seed, "labels": "flipped"}
    return PoisonSet(clean.x[idx].clone(), clean.num_classes - 1 - clean.y[idx], idx, eps_d, provenance)


@UNITS.register("label_flip")
def label_flip_units(n: int, eps_d: float, params: dict) -> int:
    """None: label flip copies images and passes nothing through a network."""
    return 0
