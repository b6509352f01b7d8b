"""The common interface of every attack, and the checks every poison set must pass.

An attack is a function ``attack(clean, eps_d, seed, **params) -> PoisonSet`` registered by name. It
returns exactly round(ε_d·N) poisons in pixel space [0, 1], each started from a clean training image
whose index it records. Only x is optimized, so a poison keeps its source image's label, except for
attacks that relabel (label flip), which say so in ``provenance["labels"]``.

A poison is appended to μ (``provenance["mode"]`` "append", the default) or replaces the images it was
made from ("replace": unlearnable examples). A poison that declares a perturbation budget
(``provenance["norm"]`` in "linf", "l2", "l0" and ``provenance["eps"]``) is checked against it, per image. Pixels
lie in [0, 1] unless the provenance declares ``bounds: "none"`` (``qlib.attacks.constraints``, appended poisons only).
"""

from dataclasses import dataclass

import torch

from ..data import Dataset
from ..poison import PoisonSet, check_budget
from ..registry import Registry
from .constraints import BOUNDS

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
    - ``version``: bumped whenever the attack's poisons change; it is part of every poison's cache key.
    """

    model: str | None = None
    scheme: str | None = None
    target: bool = False
    replaces: bool = False
    device: bool = True
    settings: str | None = None
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


LABEL_RULES = ("kept", "flipped")  # flipped: y ← C − 1 − y
MODES = ("append", "replace")
NORMS = ("linf", "l2", "l0")  # l0 counts changed pixel positions (all channels of a position count once)
TOLERANCE = 1e-5  # float slack when checking a declared L∞ or L2 budget (L0 counts any change)


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


def perturbation_norms(poison: PoisonSet, clean: Dataset, norm: str) -> torch.Tensor:
    """‖x_poison − x_source‖ per poison, in ``norm`` ("linf", "l2" or "l0")."""
    if norm not in NORMS:
        raise ValueError(f"unknown perturbation norm {norm!r}; valid: {', '.join(NORMS)}")
    delta = (poison.x - clean.x[poison.indices].to(poison.x)).flatten(2)  # N, C, H·W
    if norm == "linf":
        return delta.abs().flatten(1).amax(1)
    if norm == "l2":
        return delta.flatten(1).norm(dim=1)
    return (delta != 0).any(1).sum(1).to(poison.x.dtype)


def check_perturbation(poison: PoisonSet, clean: Dataset) -> None:
    norm, eps = poison.provenance["norm"], poison.provenance.get("eps")
    if not isinstance(eps, (int, float)) or eps <= 0:
        raise ValueError(f"poison provenance eps={eps!r} must be a positive perturbation budget")
    norms = perturbation_norms(poison, clean, norm)
    if not (norms <= eps + TOLERANCE).all():
        worst = int(norms.argmax())
        raise ValueError(
            f"poison {worst} (source image {int(poison.indices[worst])}) leaves its {norm} budget "
            f"eps={eps:.6g}: its perturbation has {norm} norm {norms[worst].item():.6g}"
        )


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
        raise ValueError(
            f"poison labels do not follow the {poison.provenance['labels']!r} rule for their source images"
        )
    if (bounds := poison.provenance.get("bounds", "image")) not in BOUNDS:
        raise ValueError(f"poison provenance bounds={bounds!r}; valid: {', '.join(BOUNDS)}")
    if bounds == "none" and poison.provenance.get("mode") == "replace":
        raise ValueError(
            "a poison that replaces training images must be images: bounds 'none' is for appended poisons only"
        )
    if poison.provenance.get("mode", "append") not in MODES:
        raise ValueError(f"poison provenance mode={poison.provenance['mode']!r}; valid: {', '.join(MODES)}")
    if poison.provenance.get("mode") == "replace" and "norm" not in poison.provenance:
        raise ValueError(
            "a poison that replaces training images must declare its perturbation budget (provenance norm and eps)"
        )
    if "norm" in poison.provenance:
        check_perturbation(poison, clean)
    adversarial = poison.provenance.get("adversarial_class")  # targeted attacks: poisons come from that class
    if adversarial is not None and not (clean.y[poison.indices] == adversarial).all():
        raise ValueError(
            f"poisons of a targeted attack must come from its adversarial class {adversarial}; "
            f"source classes {sorted(set(clean.y[poison.indices].tolist()))}"
        )
    return poison


def run_attack(name: str, clean: Dataset, eps_d: float, seed: int, **params) -> PoisonSet:
    """Look up attack ``name``, run it, and validate what it returns."""
    attack = ATTACKS.get(name)
    check_budget(eps_d)
    return validate(attack(clean, eps_d, seed, **params), clean)
