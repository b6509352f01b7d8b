"""Each experiment's settings: the preset's ``experiments:`` block, one typed block per experiment that has knobs of
its own (notebooks 03-06, 09 and 10), checked at load against its dataclass here and merged by overrides per field.

``experiments: {targeted: {targets: 15, …}, strength: {…}, unlearnable: {…}, ablation: {…}}`` in a preset YAML
becomes :class:`Experiments`; ``cfg.experiments.targeted.targets`` reads it. An unknown block or field, a value of
the wrong type or out of range is a :class:`ParameterError` of one line naming it and what is allowed.
"""

import typing
from dataclasses import asdict, dataclass, field, fields, replace

from .attacks import ATTACKS
from .paper import TARGETED_BITS
from .params import check_type
from .registry import ParameterError, unknown_name


def allowed(rule, text: str):
    """A field whose values must pass ``rule``, described as ``text`` when one does not."""
    return field(metadata={"allowed": (rule, text)})


def _distinct(v) -> bool:
    return len(v) > 0 and len(set(v)) == len(v)


def _size(v) -> bool:
    return v is None or v >= 1


SEEDS = (_distinct, "a non-empty list of distinct integers")
SIZE = (_size, "a positive integer or null (the preset's)")


@dataclass(frozen=True)
class Targeted:
    """Notebook 05, the targeted attack of Section 4.3 (gradient matching's own settings are under ``attacks``)."""

    targets: int = allowed(lambda v: v >= 1, "a positive integer")  # target test images (the paper: 10)
    seeds: list[int] = allowed(*SEEDS)  # trial seeds per target (the paper: 8)
    eps_d: float = allowed(lambda v: 0 < v <= 1, "a number in (0, 1]")  # the budget ε_d (the paper: 0.01)
    train_size: int | None = allowed(*SIZE)  # surrogates' and victims' training images (null: train_size)
    epochs: int | None = allowed(*SIZE)  # surrogates' and victims' epochs (null: epochs)
    # The QAT victims' weight bit-widths, among the paper's 1, 3, 4, 5, 8 (1 is BNN); FP victims always run.
    bits: list[int] = allowed(
        lambda v: _distinct(v) and set(v) <= set(TARGETED_BITS),
        f"a non-empty list of distinct bit-widths among the paper's {', '.join(map(str, TARGETED_BITS))} (1: BNN)",
    )


@dataclass(frozen=True)
class Strength:
    """Notebook 06, where the attacks bite: the seeds of the small models' FP drops, those among them that choose the
    regimes the claims are tested in, and the fresh seeds that decide the claims there."""

    seeds: list[int] = allowed(*SEEDS)
    choice_seeds: list[int] = allowed(*SEEDS)
    claim_seeds: list[int] = allowed(*SEEDS)

    def check(self, where: str) -> None:
        if not set(self.choice_seeds) <= set(self.seeds):
            raise ParameterError(
                f"{where}.choice_seeds={self.choice_seeds}: allowed is a subset of seeds {self.seeds} (the regimes "
                "are chosen on FP drops already measured)"
            )
        if reused := sorted(set(self.claim_seeds) & set(self.choice_seeds)):
            raise ParameterError(
                f"{where}.claim_seeds={self.claim_seeds}: seed(s) {reused} also chose the regimes; allowed are "
                "seeds outside choice_seeds (fresh runs decide the claims)"
            )


@dataclass(frozen=True)
class Unlearnable:
    """Notebook 04, Table 5: every image is perturbed and every column retrains on all of them, so it may train on a
    smaller subset than the other tables."""

    train_size: int | None = allowed(*SIZE)


@dataclass(frozen=True)
class Ablation:
    """Notebook 03, Table 4's second block: LSQ rows (learned step, where the ĝ switch is testable)."""

    lsq_bits: list[int] = allowed(
        lambda v: len(set(v)) == len(v) and set(v) <= {4, 8}, "a list of distinct bit-widths among 4, 8 ([]: none)"
    )


def _backdoors() -> list[str]:
    return [n for n in ATTACKS.names() if ATTACKS.meta(n).trigger]


def _budgets(v) -> bool:
    return (
        len(v) > 0
        and set(v) <= set(_backdoors())
        and all(not isinstance(e, bool) and isinstance(e, (int, float)) and 0 < e <= 1 for e in v.values())
    )


@dataclass(frozen=True)
class Backdoors:
    """Notebook 09, backdoors across the quantization grid: each backdoor attack run, with its budget ε_d (its other
    settings are under ``attacks``)."""

    budgets: dict = allowed(_budgets, f"a mapping of backdoor attacks ({', '.join(_backdoors())}) to budgets in (0, 1]")


def _names(v) -> bool:
    return _distinct(v) and all(isinstance(e, str) and e for e in v)


@dataclass(frozen=True)
class Formats:
    """Notebook 10, today's formats: the schemes it runs beside int per tensor (``TASK:METHOD`` or
    ``TASK:METHOD-gN``, checked with torchao's presence when the notebook plans its cells) and its seeds."""

    schemes: list[str] = allowed(_names, "a non-empty list of distinct scheme names such as 4W:torchao-g32, 8W8A:fp8")
    seeds: list[int] = allowed(*SEEDS)


@dataclass(frozen=True)
class Experiments:
    targeted: Targeted
    strength: Strength
    unlearnable: Unlearnable
    ablation: Ablation
    backdoors: Backdoors
    formats: Formats


BLOCKS: dict[str, type] = {f.name: f.type for f in fields(Experiments)}


def _block(name: str, values):
    cls, path = BLOCKS[name], f"experiments.{name}"
    if not isinstance(values, dict):
        raise ParameterError(
            f"preset field {path}={values!r}: allowed is a mapping of {cls.__name__}'s fields to values"
        )
    names = [f.name for f in fields(cls)]
    for key in values:
        if key not in names:
            raise unknown_name("setting", key, names, f"preset field {path}")
    if missing := [n for n in names if n not in values]:
        raise ParameterError(
            f"preset field {path}: missing {', '.join(missing)}; a block names all of {', '.join(names)}"
        )
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        value = values[f.name]
        check_type(f"{path}.{f.name}", value, hints[f.name], "preset field")
        rule, text = f.metadata["allowed"]
        if not rule(value):
            raise ParameterError(f"preset field {path}.{f.name}={value!r}: allowed is {text}")
    block = cls(**values)
    if hasattr(block, "check"):
        block.check(f"preset field {path}")
    return block


def parse_experiments(blocks, where: str = "preset field experiments") -> Experiments:
    """``blocks`` ({experiment: {field: value}}, every block and field named) as :class:`Experiments`."""
    if not isinstance(blocks, dict):
        raise ParameterError(f"{where}={blocks!r}: allowed is a mapping of experiments ({', '.join(BLOCKS)})")
    for name in blocks:
        if name not in BLOCKS:
            raise unknown_name("experiment", name, list(BLOCKS), where)
    if missing := [n for n in BLOCKS if n not in blocks]:
        raise ParameterError(f"{where}: missing {', '.join(missing)}; a preset names all of {', '.join(BLOCKS)}")
    return Experiments(**{name: _block(name, blocks[name]) for name in BLOCKS})


def merge_experiments(base: Experiments, override) -> Experiments:
    """``override``'s fields over ``base``'s, per experiment: the fields a block names replace the preset's, the
    others stay; the result is checked as a preset's blocks are."""
    if not isinstance(override, dict):
        raise ParameterError(
            f"preset field experiments={override!r}: allowed is a mapping of experiments ({', '.join(BLOCKS)}) to "
            "settings"
        )
    for name, values in override.items():
        if name not in BLOCKS:
            raise unknown_name("experiment", name, list(BLOCKS), "preset field experiments")
        if not isinstance(values, dict):
            raise ParameterError(
                f"preset field experiments.{name}={values!r}: allowed is a mapping of setting names to values"
            )
    merged = asdict(base)
    return parse_experiments({name: {**merged[name], **override.get(name, {})} for name in BLOCKS})


def with_settings(cfg, experiment: str, **changes):
    """``cfg`` with the named fields of one experiment's block changed (``replace`` one level down)."""
    block = replace(getattr(cfg.experiments, experiment), **changes)
    return replace(cfg, experiments=replace(cfg.experiments, **{experiment: block}))
