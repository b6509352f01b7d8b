"""Quantization schemes by name: a task ("fp", "1W", "1W1A", "4W", "4W4A", "8W", "8W8A", …) and a method."""

import re
from dataclasses import dataclass

from ..registry import ParameterError

METHODS = ("int", "lsq", "bnn", "bnn++", "adabin")
MULTI_BIT_METHODS = ("int", "lsq")
ONE_BIT_METHODS = ("bnn", "bnn++", "adabin")
KEEP_FP = ("first", "last")
REGIMES = ("fp", "ptq", "qat")  # full precision; post-training quantization (Eq. (8)); quantization-aware training
TASKS = ("fp", "1W", "1W1A", "4W", "4W4A", "8W", "8W8A")  # the paper's; any "<b>W" or "<b>W<b>A" with 1 ≤ b ≤ 32 parses


@dataclass(frozen=True)
class QuantScheme:
    """What to quantize and how (Eq. (10): a forward quantizer F and a backward quantizer B).

    - ``w_bits``/``a_bits``: weight and activation bits (None = full precision).
    - ``method``: for b ≥ 2, "int" (F = P_Q with the max-abs scale, B = clipped indicator) or "lsq" (F = P_Q
      with a learned step s, LSQ, Esser et al. 2020; see ``quantizers.LSQWeight``; activations, in a WA task,
      as "int"); for 1 bit, "bnn" (F = sign, B = 1_[−1,1]),
      "bnn++" (F = SignSwish SS_β, B = SS_β') or "adabin" (adaptive binary sets {β − α, β + α} and Maxout,
      Tu et al. 2022; see ``quantizers.AdaBinWeight``); "fp" for no quantization.
    - ``per_channel``: one scale (LSQ: one step) per output channel instead of one per tensor (AdaBin is always
      per channel).
    - ``scale_1bit``: multiply 1-bit weights by mean|w| (per tensor or per channel); not used by AdaBin.
    - ``keep_fp``: layers left in full precision: "first" (first conv), "last" (last linear), both or neither.
    - ``beta``: SS_β's β at the start and end of training, raised geometrically (BNN++).
    - ``act_momentum``: EMA momentum of the running max that sets activation scales during QAT.
    """

    task: str
    method: str
    w_bits: int | None
    a_bits: int | None
    per_channel: bool = False
    scale_1bit: bool = True
    keep_fp: tuple[str, ...] = KEEP_FP
    beta: tuple[float, float] = (5.0, 50.0)
    act_momentum: float = 0.1

    @property
    def name(self) -> str:
        return self.task if self.method in ("fp", "int") else f"{self.task} {self.method}"

    @property
    def is_fp(self) -> bool:
        return self.w_bits is None and self.a_bits is None


def _listed(methods: tuple[str, ...]) -> str:
    return ", ".join(f"'{m}'" for m in methods[:-1]) + f" or '{methods[-1]}'"


def _check_bits(bits: int, task: str) -> int:
    if not 1 <= bits <= 32:
        raise ValueError(f"bits={bits} in task {task!r} is outside 1-32")
    return bits


def parse_scheme(task: str, method: str | None = None, **options) -> QuantScheme:
    """``parse_scheme("4W4A")``, ``parse_scheme("1W1A", method="bnn++")``; ``options`` set the other fields.

    The default method is "int" when every quantized part has ≥ 2 bits and "bnn" when one has 1 bit;
    "int" and "lsq" are for tasks whose parts all have ≥ 2 bits, "bnn", "bnn++" and "adabin" for tasks with a
    1-bit part only.
    """
    if task == "fp":
        if method not in (None, "fp"):
            raise ValueError(f"task 'fp' takes no quantization method, got method={method!r}")
        return QuantScheme("fp", "fp", None, None, **options)
    m = re.fullmatch(r"(\d+)W(?:(\d+)A)?", task)
    if not m:
        raise ValueError(
            f"unknown task {task!r}; valid: {', '.join(TASKS)} (generally '<b>W' or '<b>W<b>A', b in 1-32)"
        )
    w_bits = _check_bits(int(m[1]), task)
    a_bits = _check_bits(int(m[2]), task) if m[2] else None
    one_bit = 1 in (w_bits, a_bits)
    method = method or ("bnn" if one_bit else "int")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if one_bit and method in MULTI_BIT_METHODS:
        raise ValueError(
            f"task {task!r} has a 1-bit part: use method {_listed(ONE_BIT_METHODS)}, not {method!r}, "
            "which needs ≥ 2 bits in every part"
        )
    if not one_bit and method in ONE_BIT_METHODS:
        raise ValueError(
            f"method {method!r} is for tasks with a 1-bit part (the 1-bit methods are "
            f"{_listed(ONE_BIT_METHODS)}); task {task!r} needs method {_listed(MULTI_BIT_METHODS)}"
        )
    keep = tuple(options.get("keep_fp", KEEP_FP))
    if not set(keep) <= set(KEEP_FP):
        raise ValueError(f"unknown keep_fp entries {sorted(set(keep) - set(KEEP_FP))}; valid: {', '.join(KEEP_FP)}")
    return QuantScheme(task, method, w_bits, a_bits, **{**options, "keep_fp": keep})


def scheme_named(name: str) -> QuantScheme:
    """A scheme from its name on the command line or in a notebook's parameters: ``TASK`` or ``TASK:METHOD`` (``fp``,
    ``4W``, ``4W4A``, ``1W1A:adabin``, ``4W:lsq``); anything else is a ``ParameterError`` naming what is allowed."""
    task, _, method = name.partition(":")
    try:
        return parse_scheme(task, method or None)
    except ValueError as e:
        raise ParameterError(
            f"scheme {name!r}: {e}; allowed: TASK or TASK:METHOD, e.g. fp, 1W, 4W, 8W, 4W4A, 1W1A:adabin, 4W:lsq"
        ) from None
