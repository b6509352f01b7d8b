"""The study's design: its primary comparisons, declared in the preset before the data (field ``primary``).

Each of the paper's claims (``CLAIMS``) is tested by a few primary comparisons, chosen where earlier runs on seeds
that never decide (notebook 06's seeds 0-14 and Tables 1-5's 0-2) showed the effect largest. A comparison names a
regime (model, constraint mode ``bounds``, budget ε_d, training-set size) and two sides, each an attack in a
setting (FP, PTQ or QAT under a scheme; GC-Q's Table 4 switches ``paq`` and ``ghat``): the claim is that ``better``'s
accuracy drop is above ``worse``'s (a smaller drop). Its smallest effect of interest δ (points) is the difference
below which the study calls it ``negligible`` (``qlib.stats``, primary comparisons).

A targeted comparison (``targeted``, claim 6's other half) is decided on trials, not seeds: a trial is a seed s
and one of ``per_seed`` targets. Its victims fine-tune the seed's clean FP model (the pretrained model, which the
attacker knows: the transfer setting of Schwarzschild et al. 2021, "Just how toxic is data poisoning?") for
``finetune_epochs`` at ``finetune_lr`` on a fine-tuning set of ``finetune_size`` images the pretrained model never
saw, ``eps_d`` of them replaced by gradient-matching poisons crafted against the pretrained model; ``better`` and
``worse`` are the victims' settings (FP or QAT) on the same poisons. The claim is that ``better``'s success rate is
below ``worse``'s; δ is in points of success rate. It is decided once, on ``trials`` trials (seeds ``first_seed``,
…), by the exact McNemar test (``qlib.stats.paired_rates``); the pilot seeds' trials size it.

The seeds: ``pilot_seeds`` estimate each comparison's spread (the seeds needed for power 0.9 at δ) and never
decide; the deciding seeds are ``first_seed``, ``first_seed`` + 1, … in groups of ``group``, up to ``cap``. Every
name is checked when the preset loads: a bad one is refused with one line naming it and what is allowed.
"""

import math
import re
from dataclasses import dataclass

from .attacks import ATTACKS
from .attacks.constraints import BOUNDS
from .models import MODELS
from .quant import QuantScheme, parse_scheme
from .registry import ParameterError, unknown_name
from .stats import ALPHA

CLAIMS = {
    1: "quantization more robust",
    2: "lower bits more robust",
    3: "WA more robust than W",
    4: "QAA stronger than QOA",
    5: "PAQ and ĝ both needed",
    6: "QAT blunts unlearnable examples and targeted attacks",
}
REGIMES = ("FP", "PTQ", "QAT")
DESIGN_KEYS = {"pilot_seeds", "first_seed", "group", "cap", "delta", "comparisons", "targeted"}
TARGETED_KEYS = {
    "id",
    "claim",
    "better",
    "worse",
    "finetune_size",
    "finetune_epochs",
    "finetune_lr",
    "eps_d",
    "per_seed",
    "trials",
    "settings",
    "delta",
    "why",
}
COMPARISON_KEYS = {"id", "claim", "model", "bounds", "eps_d", "train_size", "attack", "better", "worse", "delta", "why"}
SIDE_KEYS = {"setting", "attack", "paq", "ghat"}


@dataclass(frozen=True)
class Side:
    """One cell of a comparison: ``attack`` in ``regime`` ("fp", "ptq", "qat") under ``scheme``, with GC-Q's
    switches."""

    attack: str
    regime: str
    scheme: QuantScheme
    switches: tuple = ()  # (("paq", False), ...): GC-Q's Table 4 switches, as qlib.cells.poison takes them

    @property
    def name(self) -> str:
        setting = "FP" if self.regime == "fp" else f"{self.regime.upper()} {self.scheme.name}"
        off = [{"paq": "no PAQ", "quantized_grad": "no ĝ"}[k] for k, v in self.switches if not v]
        return self.attack + (f" ({', '.join(off)})" if off else "") + f" in {setting}"


@dataclass(frozen=True)
class Primary:
    """One primary comparison: in the regime (``model``, ``bounds``, ``eps_d``, ``train_size``), ``better``'s drop
    is above ``worse``'s; ``delta`` in points."""

    id: str
    claim: int
    model: str | None  # None: the preset's
    bounds: str
    eps_d: float
    train_size: int | None  # None: the preset's
    better: Side
    worse: Side
    delta: float
    why: str

    @property
    def text(self) -> str:
        where = f"{self.model or 'preset model'}, {self.bounds} bounds, ε_d = {self.eps_d:g}"
        return f"{self.better.name} above {self.worse.name} ({where})"


@dataclass(frozen=True)
class Targeted:
    """One targeted comparison (module docstring): ``better``'s success rate is below ``worse``'s; ``delta`` in
    points of success rate; ``settings``: gradient matching's, over the preset's."""

    id: str
    claim: int
    better: tuple  # (regime, scheme) of a victim: ("fp", FP) or ("qat", scheme)
    worse: tuple
    finetune_size: int
    finetune_epochs: int
    finetune_lr: float
    eps_d: float
    per_seed: int
    trials: int
    settings: tuple  # ((name, value), ...)
    delta: float
    why: str

    @property
    def seeds(self) -> int:
        """Deciding seeds: ``trials`` / ``per_seed``."""
        return self.trials // self.per_seed

    @property
    def text(self) -> str:
        name = lambda side: "FP" if side[0] == "fp" else f"QAT {side[1].name}"
        return (
            f"gradient matching succeeds less against {name(self.better)} than {name(self.worse)} victims "
            f"(fine-tuned on {self.finetune_size} images, ε_d = {self.eps_d:g})"
        )


@dataclass(frozen=True)
class Design:
    pilot_seeds: tuple
    first_seed: int
    group: int
    cap: int
    comparisons: tuple
    targeted: tuple = ()

    @property
    def looks(self) -> list[int]:
        """The deciding seeds after each look: group, 2·group, …, cap."""
        return list(range(self.group, self.cap, self.group)) + [self.cap]

    @property
    def seeds(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.cap))

    def targeted_seeds(self, t: Targeted) -> list[int]:
        """The deciding seeds of targeted comparison ``t``: ``first_seed`` on, ``t.seeds`` of them."""
        return list(range(self.first_seed, self.first_seed + t.seeds))

    def family(self, claim: int) -> list:
        """The claim's primary comparisons, seed-wise and targeted: its Bonferroni family."""
        return [c for c in self.comparisons + self.targeted if c.claim == claim]


def _fail(where: str, value, allowed: str) -> ParameterError:
    return ParameterError(f"preset field primary{where}={value!r}: allowed is {allowed}")


def _number(where, value, positive=True) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or (positive and value <= 0)
    ):
        raise _fail(where, value, "a positive finite number" if positive else "a finite number")
    return float(value)


def _count(where, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(where, value, "a positive integer")
    return value


def parse_setting(where: str, text) -> tuple[str, QuantScheme]:
    """``FP``, ``PTQ 4W``, ``QAT 1W1A bnn``: (regime, scheme)."""
    m = re.fullmatch(r"(FP)|(PTQ|QAT) (\S+)(?: (\S+))?", text) if isinstance(text, str) else None
    if not m:
        raise _fail(where, text, "'FP', or 'PTQ <task> [method]' or 'QAT <task> [method]' (e.g. 'QAT 1W1A bnn')")
    if m[1]:
        return "fp", parse_scheme("fp")
    try:
        return m[2].lower(), parse_scheme(m[3], m[4])
    except ValueError as e:
        raise ParameterError(f"preset field primary{where}={text!r}: {e}") from None


def _side(where: str, spec, default_attack) -> Side:
    if isinstance(spec, str):
        spec = {"setting": spec}
    if not isinstance(spec, dict) or not set(spec) <= SIDE_KEYS or "setting" not in spec:
        raise _fail(
            where, spec, f"a setting string or a mapping with 'setting' and optional {sorted(SIDE_KEYS - {'setting'})}"
        )
    attack = spec.get("attack", default_attack)
    if attack not in ATTACKS.names():
        raise unknown_name("attack", attack, ATTACKS.names(), f"preset field primary{where}")
    regime, scheme = parse_setting(f"{where}.setting", spec["setting"])
    aware = ATTACKS.meta(attack).scheme == "attacked"
    if aware and regime == "fp":
        raise _fail(f"{where}.setting", spec["setting"], f"a quantized setting: {attack} is quantization-aware")
    for key in ("paq", "ghat"):
        if key in spec and (attack != "gc_q" or not isinstance(spec[key], bool)):
            raise _fail(f"{where}.{key}", spec[key], "true or false, and only for attack gc_q (Table 4's switches)")
    # both switches, as notebook 03 passes them, once either is set (both on is plain GC-Q)
    on = (spec.get("paq", True), spec.get("ghat", True))
    switches = () if all(on) else (("paq", on[0]), ("quantized_grad", on[1]))
    return Side(attack, regime, scheme, switches)


def _comparison(i: int, spec, default_delta: float) -> Primary:
    where = f".comparisons[{i}]"
    if not isinstance(spec, dict):
        raise _fail(
            where,
            spec,
            "a mapping with id, claim, better, worse and optional model, bounds, eps_d, train_size, attack, delta, why",
        )
    for key in sorted(set(spec) - COMPARISON_KEYS):
        raise unknown_name("key", key, sorted(COMPARISON_KEYS), f"preset field primary{where}")
    for key in ("id", "claim", "better", "worse"):
        if key not in spec:
            raise _fail(where, spec, f"a mapping that names {key}")
    if spec["claim"] not in CLAIMS:
        raise _fail(f"{where}.claim", spec["claim"], f"one of {', '.join(f'{k} ({v})' for k, v in CLAIMS.items())}")
    model = spec.get("model")
    if model is not None and model not in MODELS.names():
        raise unknown_name("model", model, MODELS.names(), f"preset field primary{where}.model")
    bounds = spec.get("bounds", "image")
    if bounds not in BOUNDS:
        raise _fail(f"{where}.bounds", bounds, f"one of {', '.join(BOUNDS)}")
    eps_d = _number(f"{where}.eps_d", spec.get("eps_d", 0.03))
    if eps_d > 1:
        raise _fail(f"{where}.eps_d", eps_d, "a number in (0, 1]")
    train_size = spec.get("train_size")
    if train_size is not None:
        _count(f"{where}.train_size", train_size)
    better = _side(f"{where}.better", spec["better"], spec.get("attack"))
    worse = _side(f"{where}.worse", spec["worse"], spec.get("attack"))
    if better == worse:
        raise _fail(where, spec, "two different sides (better and worse name the same cell)")
    delta = _number(f"{where}.delta", spec.get("delta", default_delta))
    return Primary(
        str(spec["id"]), spec["claim"], model, bounds, eps_d, train_size, better, worse, delta, str(spec.get("why", ""))
    )


def _victim_setting(where: str, text) -> tuple:
    regime, scheme = parse_setting(where, text)
    if regime == "ptq":
        raise _fail(where, text, "'FP' or 'QAT <task> [method]': a fine-tuned victim trains")
    return regime, scheme


def _targeted(i: int, spec, default_delta: float) -> Targeted:
    where = f".targeted[{i}]"
    if not isinstance(spec, dict):
        raise _fail(where, spec, f"a mapping with {sorted(TARGETED_KEYS)}")
    for key in sorted(set(spec) - TARGETED_KEYS):
        raise unknown_name("key", key, sorted(TARGETED_KEYS), f"preset field primary{where}")
    for key in sorted(TARGETED_KEYS - {"settings", "delta", "why"} - set(spec)):
        raise _fail(where, spec, f"a mapping that names {key}")
    if spec["claim"] not in CLAIMS:
        raise _fail(f"{where}.claim", spec["claim"], f"one of {', '.join(f'{k} ({v})' for k, v in CLAIMS.items())}")
    better, worse = (_victim_setting(f"{where}.{k}", spec[k]) for k in ("better", "worse"))
    if better == worse:
        raise _fail(f"{where}.worse", spec["worse"], f"a victim other than better's ({spec['better']!r})")
    size, epochs, per_seed, trials = (
        _count(f"{where}.{k}", spec[k]) for k in ("finetune_size", "finetune_epochs", "per_seed", "trials")
    )
    if trials % per_seed:
        raise _fail(f"{where}.trials", trials, f"a multiple of per_seed ({per_seed}): each seed brings per_seed trials")
    eps_d = _number(f"{where}.eps_d", spec["eps_d"])
    if eps_d > 1:
        raise _fail(f"{where}.eps_d", eps_d, "a number in (0, 1]")
    settings = spec.get("settings", {})
    if not isinstance(settings, dict) or not all(isinstance(k, str) for k in settings):
        raise _fail(f"{where}.settings", settings, "a mapping of gradient matching's keyword arguments")
    delta = _number(f"{where}.delta", spec.get("delta", default_delta))
    if delta > 100:
        raise _fail(f"{where}.delta", delta, "a number of points of success rate in (0, 100]")
    return Targeted(
        str(spec["id"]),
        spec["claim"],
        better,
        worse,
        size,
        epochs,
        _number(f"{where}.finetune_lr", spec["finetune_lr"]),
        eps_d,
        per_seed,
        trials,
        tuple(sorted(settings.items())),
        delta,
        str(spec.get("why", "")),
    )


def parse_design(spec) -> Design | None:
    """The preset's ``primary`` mapping as a :class:`Design` (None for an empty mapping: no primary comparisons)."""
    if not spec:
        return None
    if not isinstance(spec, dict):
        raise _fail("", spec, "a mapping (pilot_seeds, first_seed, group, cap, delta, comparisons)")
    for key in sorted(set(spec) - DESIGN_KEYS):
        raise unknown_name("key", key, sorted(DESIGN_KEYS), "preset field primary")
    for key in sorted(DESIGN_KEYS - {"targeted"} - set(spec)):
        raise _fail("", spec, f"a mapping that names {key}")
    pilot = spec["pilot_seeds"]
    if not (
        isinstance(pilot, list)
        and len(pilot) >= 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in pilot)
        and len(set(pilot)) == len(pilot)
    ):
        raise _fail(".pilot_seeds", pilot, "a list of at least two distinct integers (a spread needs two seeds)")
    first, group, cap = (
        _count(f".{k}", spec[k]) if k != "first_seed" else spec[k] for k in ("first_seed", "group", "cap")
    )
    if isinstance(first, bool) or not isinstance(first, int) or first < 0:
        raise _fail(".first_seed", first, "an integer ≥ 0")
    if group < 2 or cap < group:
        raise _fail(".group", group, f"an integer ≥ 2 and ≤ cap ({cap}): each look needs two seeds")
    deciding = set(range(first, first + cap))
    if reused := sorted(deciding & set(pilot)):
        raise _fail(".first_seed", first, f"deciding seeds that exclude the pilot seeds (seeds {reused} are both)")
    delta = _number(".delta", spec["delta"])
    if not isinstance(spec["comparisons"], list) or not spec["comparisons"]:
        raise _fail(".comparisons", spec["comparisons"], "a non-empty list of comparisons")
    comparisons = tuple(_comparison(i, c, delta) for i, c in enumerate(spec["comparisons"]))
    targeted = spec.get("targeted", [])
    if not isinstance(targeted, list):
        raise _fail(".targeted", targeted, "a list of targeted comparisons")
    targeted = tuple(_targeted(i, c, delta) for i, c in enumerate(targeted))
    ids = [c.id for c in comparisons + targeted]
    if len(set(ids)) != len(ids):
        raise _fail(".comparisons", ids, "distinct ids (over comparisons and targeted)")
    design = Design(tuple(pilot), first, group, cap, comparisons, targeted)
    for i, t in enumerate(targeted):
        if reused := sorted(set(design.targeted_seeds(t)) & set(pilot)):
            raise _fail(
                f".targeted[{i}].trials",
                t.trials,
                f"deciding seeds that exclude the pilot seeds (seeds {reused} are both)",
            )
        # the exact test at the claim's Bonferroni level needs k trials that differ, all one way: 2·2^−k ≤ α/m
        fewest = math.ceil(math.log2(2 * len(design.family(t.claim)) / ALPHA))
        if t.trials < fewest:
            raise _fail(
                f".targeted[{i}].trials",
                t.trials,
                f"at least {fewest}: at claim {t.claim}'s level (α/"
                f"{len(design.family(t.claim))}) the exact test decides nothing on fewer",
            )
    return design
