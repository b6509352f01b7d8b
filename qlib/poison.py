"""The poisoned set ν: images, labels, where each poison started from, its budget ε_d and its provenance.

Following Witches' Brew, a poison set carries the indices of the clean images its points were
initialised from, so it can be audited against μ and re-created from its provenance.
"""

from dataclasses import dataclass, field

import torch

from . import artifacts


def check_budget(eps_d: float) -> float:
    """ε_d is a fraction of the clean training set: it must lie in (0, 1]."""
    if isinstance(eps_d, bool) or not isinstance(eps_d, (int, float)) or not 0 < eps_d <= 1:
        raise ValueError(f"budget eps_d={eps_d!r}: allowed is a number in (0, 1]")
    return float(eps_d)


@dataclass
class PoisonSet:
    """ν for μ + ν. ``provenance`` names the attack, its parameters and its seed (JSON-serialisable). Images lie in
    [0, 1] unless the provenance declares ``bounds: "none"`` (``qlib.attacks.constraints``)."""

    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor
    eps_d: float
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        check_budget(self.eps_d)
        n = len(self.x)
        if self.x.ndim != 4 or not self.x.is_floating_point():
            raise ValueError(f"poison images must be float NCHW, got {tuple(self.x.shape)} {self.x.dtype}")
        if self.y.shape != (n,) or self.y.dtype != torch.int64:
            raise ValueError(f"poison labels must be int64 of shape ({n},), got {tuple(self.y.shape)} {self.y.dtype}")
        if self.indices.shape != (n,) or self.indices.dtype != torch.int64:
            raise ValueError(f"poison indices must be int64 of shape ({n},), got {tuple(self.indices.shape)}")
        if n and not torch.isfinite(self.x).all():
            raise ValueError(f"poison images hold {int((~torch.isfinite(self.x)).sum())} non-finite values (NaN or inf)")
        if n and self.provenance.get("bounds") != "none" and (self.x.min() < 0 or self.x.max() > 1):
            raise ValueError(f"poison images leave [0, 1]: range [{self.x.min():.4g}, {self.x.max():.4g}]; only a poison "
                             "whose provenance declares bounds: 'none' (not images) may")

    def __len__(self) -> int:
        return len(self.y)

    def digest(self) -> str:
        """A SHA-256 over the tensors, the budget and the provenance: the poison's identity in cache keys."""
        return artifacts.tensor_digest((self.x, self.y, self.indices), {"eps_d": self.eps_d, "provenance": self.provenance})

    def save(self, stem, **meta) -> None:
        """Write ``stem.safetensors`` and ``stem.json`` atomically; ``meta`` (JSON) is kept in the manifest."""
        artifacts.save(
            stem,
            {"x": self.x, "y": self.y, "indices": self.indices},
            {**meta, "kind": "PoisonSet", "eps_d": self.eps_d, "provenance": self.provenance},
        )

    @classmethod
    def load(cls, stem) -> "PoisonSet":
        return cls.from_artifact(stem, *artifacts.load(stem))

    @classmethod
    def from_artifact(cls, stem, tensors: dict, meta: dict) -> "PoisonSet":
        """The PoisonSet held by an artifact already read (and checksummed) from ``stem``."""
        if meta.get("kind") != "PoisonSet" or set(tensors) != {"x", "y", "indices"}:
            raise artifacts.ArtifactError(f"artifact {stem} is not a PoisonSet (kind={meta.get('kind')!r}, tensors={sorted(tensors)})")
        return cls(tensors["x"], tensors["y"], tensors["indices"], meta["eps_d"], meta["provenance"])
