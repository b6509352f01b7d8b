"""Presets: one YAML file per scale (``smoke``, ``cpu``, ``paper``) in ``qlib/presets/``.

The YAML keys are the notebooks' parameters, so ``papermill -f qlib/presets/cpu.yaml`` and
``load_preset("cpu")`` give the same run. Every field is validated; unknown keys are errors.
"""

import inspect
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import yaml

from .attacks import ATTACKS
from .attacks.gc import OPTIMIZERS
from .attacks.unlearnable import UNLEARNABLE
from .data import SOURCES
from .models import MODELS
from .poison import check_budget

PRESET_DIR = Path(__file__).with_name("presets")


@dataclass(frozen=True)
class Preset:
    preset: str  # the preset's own name
    dataset: str
    model: str
    width: float  # channel multiplier of the model
    train_size: int | None  # class-balanced subset of the training set; None = all
    test_size: int | None
    epochs: int  # clean training / retraining epochs
    batch_size: int
    lr: float
    weight_decay: float
    augment: bool
    seeds: list[int]
    device: str  # "auto", "cpu", "cuda", "cuda:1", …
    eps_d: float  # poison budget of the indiscriminate tables (the paper: 0.03)
    eps_w: float  # GradPC target's squared budget ‖ŵ − w_c‖² for GC and GC-Q (the paper: 0.5)
    gc_epochs: int  # GC / GC-Q steps on the poison images (the paper: 2000, early stop below 1)
    gc_lr: float
    gc_optimizer: str  # "adam" or "gd"
    tgda_epochs: int  # TGDA / TGDA-Q leader steps (the paper: 200)
    tgda_lr: float  # the leader's Adam step on the pixels
    tgda_follower_steps: int
    tgda_cg_iters: int
    tgda_batch_size: int
    # Unlearnable examples (Table 5): keyword arguments of each method, by name; a method not listed runs with
    # its defaults, the original CIFAR-10 settings. Table 5 trains on a subset of ``unlearnable_train_size``
    # images (null: ``train_size``), since every image is perturbed and every column retrains on all of them.
    unlearnable: dict
    unlearnable_train_size: int | None
    # Targeted attack (Section 4.3): gradient matching's keyword arguments; the number of target test images and
    # the seeds of the trials per target (the paper: 10 targets × 8 seeds); the budget ε_d (the paper: 0.01); and
    # the training-set size and epochs of its surrogates and victims (null: ``train_size``, ``epochs``).
    gradient_matching: dict
    targets: int
    targeted_seeds: list[int]
    targeted_eps_d: float
    targeted_train_size: int | None
    targeted_epochs: int | None

    def __post_init__(self):
        SOURCES.get(self.dataset)
        MODELS.get(self.model)
        for name in ("epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"preset field {name}={getattr(self, name)!r} must be a positive integer")
        for name in ("train_size", "test_size", "unlearnable_train_size", "targeted_train_size", "targeted_epochs"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"preset field {name}={v!r} must be a positive integer or null (all)")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"preset field lr={self.lr!r} must be a positive number")
        if not (isinstance(self.width, (int, float)) and self.width > 0):
            raise ValueError(f"preset field width={self.width!r} must be a positive number")
        if not self.seeds or not all(isinstance(s, int) for s in self.seeds) or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"preset field seeds={self.seeds!r} must be a non-empty list of distinct integers")
        check_budget(self.eps_d)
        check_budget(self.targeted_eps_d)
        if not isinstance(self.targets, int) or self.targets < 1:
            raise ValueError(f"preset field targets={self.targets!r} must be a positive integer")
        seeds = self.targeted_seeds
        if not seeds or not all(isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError(f"preset field targeted_seeds={seeds!r} must be a non-empty list of distinct integers")
        if not (isinstance(self.eps_w, (int, float)) and self.eps_w > 0):
            raise ValueError(f"preset field eps_w={self.eps_w!r} must be a positive number (a squared L2 budget)")
        for name in ("gc_epochs", "tgda_epochs", "tgda_follower_steps", "tgda_cg_iters", "tgda_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"preset field {name}={getattr(self, name)!r} must be a positive integer")
        for name in ("gc_lr", "tgda_lr"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) > 0):
                raise ValueError(f"preset field {name}={getattr(self, name)!r} must be a positive number")
        if self.gc_optimizer not in OPTIMIZERS:
            raise ValueError(f"preset field gc_optimizer={self.gc_optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        check_unlearnable(self.unlearnable)
        check_settings("gradient_matching", self.gradient_matching, "gradient_matching", GM_SUPPLIED)
        if not (self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"preset field device={self.device!r}: use 'auto', 'cpu' or 'cuda[:N]'")

    def asdict(self) -> dict:
        return asdict(self)


FIELDS = tuple(f.name for f in fields(Preset))
SUPPLIED_BY_STUDY = ("model", "device")  # the surrogate and the device come from the preset's other fields
GM_SUPPLIED = (*SUPPLIED_BY_STUDY, "target_image", "target_index", "adversarial_class", "scheme")  # set per trial


def check_settings(attack: str, params, field: str, supplied=SUPPLIED_BY_STUDY) -> None:
    """``params`` (preset field ``field``) are keyword arguments that attack ``attack`` accepts."""
    accepted = set(inspect.signature(ATTACKS.get(attack)).parameters) - {"clean", "eps_d", "seed", *supplied}
    if not isinstance(params, dict) or not set(params) <= accepted:
        bad = sorted(set(params) - accepted) if isinstance(params, dict) else params
        raise ValueError(f"preset field {field}: unknown setting(s) {bad}; valid: {', '.join(sorted(accepted))}")


def check_unlearnable(settings) -> None:
    """``settings`` maps unlearnable-example methods to keyword arguments each of them accepts."""
    if not isinstance(settings, dict):
        raise ValueError(f"preset field unlearnable={settings!r} must map method names to their settings")
    for name, params in settings.items():
        if name not in UNLEARNABLE:
            raise ValueError(f"unknown unlearnable-example method {name!r} in preset field unlearnable; valid: {', '.join(UNLEARNABLE)}")
        check_settings(name, params, f"unlearnable.{name}")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _check_keys(keys, where: str) -> None:
    unknown = sorted(set(keys) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown preset field(s) {', '.join(unknown)} in {where}; valid: {', '.join(FIELDS)}")


def read_yaml(name: str) -> dict:
    if name not in preset_names():
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(preset_names())}")
    values = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())
    _check_keys(values, f"{name}.yaml")
    if values.get("preset") != name:
        raise ValueError(f"{name}.yaml must say preset: {name}, it says {values.get('preset')!r}")
    return values


def load_preset(name: str, **overrides) -> Preset:
    """The named preset with ``overrides`` applied; an override of None keeps the preset's value."""
    _check_keys(overrides, "overrides")
    base = Preset(**read_yaml(name))
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def from_notebook(preset: str, namespace: dict) -> Preset:
    """Resolve a notebook's parameters: ``preset`` names the base; any preset field set (not None) in
    ``namespace`` — by the parameters cell, papermill ``-p`` or ``-f`` — overrides it."""
    return load_preset(preset, **{k: namespace[k] for k in FIELDS if k != "preset" and k in namespace})
