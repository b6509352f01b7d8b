"""The common interface of every attack.

An attack is a function ``attack(clean, eps_d, seed, **params) -> PoisonSet`` registered by name. It
returns exactly round(ε_d·N) poisons in pixel space [0, 1], each started from a clean training image
whose index it records. Only x is optimized, so a poison keeps its source image's label, except for
attacks that relabel (label flip), which say so in ``provenance["labels"]``. What it returns must pass the rules
of every poison set (``qlib.poison.validate``): :func:`run_attack` checks them."""

from dataclasses import dataclass

import torch

from ..data import Dataset
from ..poison import PoisonSet, check_budget, validate
from ..registry import Registry

ATTACKS = Registry("attack")


@dataclass(frozen=True)
class Needs:
    """What the pipeline (``qlib.cells.poison``) supplies an attack beyond ``(clean, eps_d, seed)``, declared when the
    attack is registered (``ATTACKS.register(name, Needs(...))``), so that the pipeline has no per-attack branches.

    - ``model``: ``"trained"``, the seed's clean trained model as ``model`` (FP, or with ``scheme="surrogate"`` the
      clean QAT model of that scheme); ``"fresh"``, a new model of the preset's architecture from the seed, as
      ``model``; ``"gradpc"``, the seed's GradPC target ŵ as ``target``; None, no model.
    - ``scheme``: ``"attacked"``, quantization-aware: the (quantized) scheme it attacks, as ``scheme``;
      ``"surrogate"``, the scheme of the surrogate it crafts through (None for FP); None, no scheme.
    - ``target``: targeted: the target test image, its index and the adversarial class.
    - ``replaces``: its poisons take the place of the clean images they were made from (``mode: "replace"``,
      ``data.mix``) instead of joining μ; a model trained on them sees N images, not N + round(ε_d·N).
    - ``device``: it takes the preset's ``device``.
    - ``settings``: the attack whose preset settings it runs with (GC-Q runs with GC's); None, its own.
    - ``trigger``: a backdoor: its poisons carry a trigger (``qlib.triggers``), which the test images get when its
      attack success rate is read.
    - ``version``: bumped whenever the attack's poisons change; it is part of every poison's cache key.
    """

    model: str | None = None
    scheme: str | None = None
    target: bool = False
    replaces: bool = False
    device: bool = True
    settings: str | None = None
    trigger: bool = False
    version: int = 1


MODEL_NEEDS, SCHEME_NEEDS = ("trained", "fresh", "gradpc"), ("attacked", "surrogate")


def needs(name: str) -> Needs:
    """What attack ``name`` declared when it was registered."""
    declared = ATTACKS.meta(name)
    if (
        not isinstance(declared, Needs)
        or declared.model not in (None, *MODEL_NEEDS)
        or declared.scheme not in (None, *SCHEME_NEEDS)
    ):
        raise ValueError(
            f"attack {name!r} declared {declared!r}; every attack registers a Needs with model in "
            f"{MODEL_NEEDS} or None and scheme in {SCHEME_NEEDS} or None"
        )
    return declared


def source_indices(n: int, k: int, seed: int) -> torch.Tensor:
    """``k`` distinct clean-image indices out of ``n``, drawn from ``seed``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]


def run_attack(name: str, clean: Dataset, eps_d: float, seed: int, **params) -> PoisonSet:
    """Look up attack ``name``, run it, and validate what it returns."""
    attack = ATTACKS.get(name)
    check_budget(eps_d)
    return validate(attack(clean, eps_d, seed, **params), clean)
