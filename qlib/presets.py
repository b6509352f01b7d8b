"""Presets: one YAML file per scale (``smoke``, ``cpu``, ``paper``) in ``qlib/presets/``.

The YAML keys are the notebooks' parameters, so ``papermill -f qlib/presets/cpu.yaml`` and
``load_preset("cpu")`` give the same run. Every field is validated; unknown keys are errors.
"""

import inspect
import math
import os
import re
import typing
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import yaml

from .attacks import ATTACKS
from .attacks.constraints import BOUNDS, BUDGET_NORMS
from .attacks.gc import BATCHNORM_MODES, OPTIMIZERS
from .data import SOURCES
from .design import Design, parse_design
from .models import MODELS
from .params import OWN, check_own, check_type
from .quant import KEEP_FP
from .registry import ParameterError, unknown_name
from .settings import Experiments, merge_experiments, parse_experiments

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
    # Layers every quantization scheme leaves in full precision: "first" (the first conv or linear layer), "last"
    # (the classifier), both (the paper's) or none ([]: the whole network, as for the GC paper's small models).
    keep_fp: list[str]
    seeds: list[int]
    device: str  # "auto", "cpu", "cuda", "cuda:1", …
    deterministic: bool  # deterministic algorithms (qlib.numerics): a non-deterministic kernel is an error
    eps_d: float  # poison budget of the indiscriminate tables (the paper: 0.03)
    eps_w: float  # GradPC target's squared budget ‖ŵ − w_c‖² for GC and GC-Q (the paper: 0.5)
    # Attack settings, nested per attack: {attack: {keyword argument: value}}, under the name of the attack whose
    # settings an attack runs with (``Needs.settings``: GC-Q runs with gc's, TGDA-Q with tgda's). An attack not
    # listed runs with its signature's defaults, the original papers' settings. Overrides merge per attack.
    attacks: dict
    # Each experiment's own settings (qlib.settings): {targeted: {…}, strength: {…}, unlearnable: {…}, ablation:
    # {…}}, checked against the experiment's dataclass. Overrides merge per experiment and field.
    experiments: Experiments
    # The primary comparisons that decide the paper's claims, declared before the data (``qlib.design``): pilot
    # seeds, deciding seeds in groups up to a cap, δ, and per comparison its claim, regime and two sides. {}: none.
    primary: dict

    def __post_init__(self):
        for name, hint in typing.get_type_hints(Preset).items():
            check_type(name, getattr(self, name), hint, "preset field")
        for name, registry in (("dataset", SOURCES), ("model", MODELS)):
            if getattr(self, name) not in registry.names():
                raise unknown_name(registry.kind, getattr(self, name), registry.names(), f"preset field {name}")
        for name, (rule, allowed) in RANGES.items():
            if not rule(getattr(self, name)):
                raise ParameterError(f"preset field {name}={getattr(self, name)!r}: allowed is {allowed}")
        check_attacks(self.attacks)
        parse_design(self.primary)
        if not (self.device in ("auto", "cpu") or re.fullmatch(r"cuda(:\d+)?", self.device)):
            raise ParameterError(f"preset field device={self.device!r}: allowed is 'auto', 'cpu' or 'cuda[:N]'")

    def asdict(self) -> dict:
        return asdict(self)

    @property
    def design(self) -> Design | None:
        """The primary comparisons (``primary``) parsed; None if there are none."""
        return parse_design(self.primary)


def _positive(v) -> bool:
    return math.isfinite(v) and v > 0


def _distinct(v) -> bool:
    return len(v) > 0 and len(set(v)) == len(v)


# Each field's range, after its type (the annotation) has been checked: (rule, what is allowed).
RANGES = {
    **{f: (lambda v: v >= 1, "a positive integer") for f in ("epochs", "batch_size")},
    **{f: (lambda v: v is None or v >= 1, "a positive integer or null (all)") for f in ("train_size", "test_size")},
    **{f: (_positive, "a positive finite number") for f in ("width", "lr", "eps_w")},
    "weight_decay": (lambda v: math.isfinite(v) and v >= 0, "a finite number ≥ 0"),
    "eps_d": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "seeds": (_distinct, "a non-empty list of distinct integers"),
    "keep_fp": (
        lambda v: set(v) <= set(KEEP_FP) and len(set(v)) == len(v),
        f"a list of distinct entries of {', '.join(KEEP_FP)} (the layers left in full precision; [] for none)",
    ),
}
FIELDS = tuple(f.name for f in fields(Preset))
# What the pipeline passes an attack itself (the surrogate or target, the scheme, the device, a targeted trial's
# target, Table 4's switches): not settings.
SUPPLIED = (
    "clean",
    "eps_d",
    "seed",
    "model",
    "target",
    "scheme",
    "device",
    "progress",
    "target_image",
    "target_index",
    "adversarial_class",
    "paq",
    "quantized_grad",
)
# The range of a setting, by its name, whichever attack takes it (its type comes from the attack's signature).
SETTING_RANGES = {
    **{
        s: (lambda v: v >= 1, "a positive integer")
        for s in (
            "epochs",
            "steps",
            "chunk",
            "batch_size",
            "cg_iters",
            "trials",
            "restarts",
            "pgd_steps",
            "train_steps",
            "max_rounds",
            "adv_steps",
            "val_size",
            "block_size",
            "patch",
        )
    },
    "follower_steps": (lambda v: v >= 0, "an integer ≥ 0"),
    **{
        s: (_positive, "a positive finite number")
        for s in (
            "lr",
            "leader_lr",
            "follower_lr",
            "eps",
            "step_size",
            "adv_eps",
            "adv_step_size",
            "ae_lr",
            "pixel_scale",
        )
    },
    "optimizer": (lambda v: v in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
    "bounds": (
        lambda v: v in BOUNDS,
        f"one of {', '.join(BOUNDS)} (none: the official code's unclipped pixels, not images)",
    ),
    "norm": (lambda v: v in BUDGET_NORMS, f"one of {', '.join(BUDGET_NORMS)} (a budget around each source image)"),
    "batchnorm": (lambda v: v in BATCHNORM_MODES, f"one of {', '.join(BATCHNORM_MODES)}"),
}


def check_attacks(attacks: dict) -> None:
    """``attacks`` maps attacks to keyword arguments each accepts, of the types its signature annotates and within
    ``SETTING_RANGES``. Only an attack that runs with its own settings is listed (``gc``, not ``gc_q``)."""
    for name, params in attacks.items():
        if name not in ATTACKS.names():
            owners = [n for n in ATTACKS.names() if ATTACKS.meta(n).settings is None]
            raise unknown_name("attack", name, owners, "preset field attacks")
        if (owner := ATTACKS.meta(name).settings) is not None:
            raise ParameterError(
                f"preset field attacks.{name}: {name} runs with {owner}'s settings; set them under attacks.{owner}"
            )
        field = f"attacks.{name}"
        if not isinstance(params, dict):
            raise ParameterError(f"preset field {field}={params!r}: allowed is a mapping of setting names to values")
        fn = ATTACKS.get(name)
        accepted = set(inspect.signature(fn).parameters) - set(SUPPLIED)
        if not set(params) <= accepted:
            raise ParameterError(
                f"preset field {field}: unknown setting(s) {sorted(set(params) - accepted)}; valid: "
                f"{', '.join(sorted(accepted))}"
            )
        hints = typing.get_type_hints(fn)
        for setting, value in params.items():
            if setting in hints:
                check_type(f"{field}.{setting}", value, hints[setting], "preset field")
            rule, allowed = SETTING_RANGES.get(setting, (lambda v: True, ""))
            if value is not None and not rule(value):
                raise ParameterError(f"preset field {field}.{setting}={value!r}: allowed is {allowed}")


def merge_attacks(base: dict, override) -> dict:
    """``override``'s settings over ``base``'s, per attack: the settings an attack's entry names replace the
    preset's, the others stay."""
    if not isinstance(override, dict):
        raise ParameterError(f"preset field attacks={override!r}: allowed is a mapping of attacks to settings")
    merged = dict(base)
    for name, params in override.items():
        if not isinstance(params, dict):
            raise ParameterError(
                f"preset field attacks.{name}={params!r}: allowed is a mapping of setting names to values"
            )
        merged[name] = {**base.get(name, {}), **params}
    return merged


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _check_keys(keys, where: str) -> None:
    for name in sorted(set(keys) - set(FIELDS)):
        raise unknown_name("preset field", name, FIELDS, where)


def read_yaml(name: str) -> dict:
    if name not in preset_names():
        raise ParameterError(f"unknown preset {name!r}; valid: {', '.join(preset_names())}")
    values = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())
    _check_keys(values, f"{name}.yaml")
    if values.get("preset") != name:
        raise ParameterError(f"{name}.yaml must say preset: {name}, it says {values.get('preset')!r}")
    return values


def load_preset(name: str, **overrides) -> Preset:
    """The named preset with ``overrides`` applied; an override of None keeps the preset's value, and ``attacks``
    merges per attack (``merge_attacks``). Any bad name or value is a :class:`ParameterError` naming it and what is
    allowed."""
    _check_keys(overrides, "overrides")
    try:
        values = read_yaml(name)
        base = Preset(**{**values, "experiments": parse_experiments(values.get("experiments"))})
        changed = {k: v for k, v in overrides.items() if v is not None}
        if "attacks" in changed:
            changed["attacks"] = merge_attacks(base.attacks, changed["attacks"])
        if "experiments" in changed:
            changed["experiments"] = merge_experiments(base.experiments, changed["experiments"])
        return replace(base, **changed)
    except ParameterError:
        raise
    except (ValueError, TypeError) as e:  # a registry's unknown name, a budget, an attack setting
        raise ParameterError(str(e)) from None


def from_notebook(preset: str, namespace: dict) -> Preset:
    """Resolve a notebook's parameters: ``preset`` names the base; any preset field set (not None) in
    ``namespace`` — by the parameters cell, papermill ``-p`` or ``-f`` — overrides it. The notebook's own
    parameters found in ``namespace`` (``qlib.params.OWN``) are checked too."""
    if not isinstance(preset, str) or preset not in preset_names():
        source = " (from QLIB_PRESET)" if os.environ.get("QLIB_PRESET") == preset else ""
        raise ParameterError(f"unknown preset {preset!r}{source}; valid: {', '.join(preset_names())}")
    for name in OWN.keys() & namespace.keys():
        check_own(name, namespace[name])
    return load_preset(preset, **{k: namespace[k] for k in FIELDS if k != "preset" and k in namespace})
