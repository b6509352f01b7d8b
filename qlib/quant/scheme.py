"""Quantization schemes by name: a task ("fp", "1W", "1W1A", "4W", "4W4A", "8W", "8W8A", …) and a method."""

import importlib.util
import re
from dataclasses import asdict, dataclass

from ..registry import ParameterError
from . import methods

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
    - ``group_size``: one scale per group of that many consecutive weights of an output channel, for a method with
      the "group" granularity (``methods.Method``); None for the method's default granularity.

    ``method`` is any registered method (``methods.names()``): the built-ins above, torchao's formats
    (``qlib.quant.torchao``) and whatever a package registers.
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
    group_size: int | None = None

    @property
    def name(self) -> str:
        group = f"-g{self.group_size}" if self.group_size else ""
        return self.task if self.method in ("fp", "int") else f"{self.task} {self.method}{group}"

    def key(self) -> dict:
        """The scheme as a cache key: every field, less ``group_size`` where a scheme has none (so that a key made
        before groups existed names the same computation)."""
        fields = asdict(self)
        if fields["group_size"] is None:
            del fields["group_size"]
        return fields

    @property
    def is_fp(self) -> bool:
        return self.w_bits is None and self.a_bits is None


def _listed(names: list[str]) -> str:
    return ", ".join(f"'{m}'" for m in names[:-1]) + f" or '{names[-1]}'"


def _bits(allowed: tuple) -> str:
    ints = sorted(b for b in allowed if b is not None)
    run = ints == list(range(ints[0], ints[-1] + 1)) and len(ints) > 2
    span = f"{ints[0]}-{ints[-1]}" if run else "/".join(map(str, ints))
    return f"{span} bits" + (" or none" if None in allowed else "")


def _check_bits(bits: int, task: str) -> int:
    if not 1 <= bits <= 32:
        raise ValueError(f"bits={bits} in task {task!r} is outside 1-32")
    return bits


def _check_method(name: str, task: str, w_bits: int | None, a_bits: int | None, options: dict) -> None:
    """Refuse, in one line naming what is allowed, a scheme its method did not declare (``methods.Method``)."""
    known = methods.names()
    if name not in known:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(known)}")
    m = methods.method(name)
    one_bit = 1 in (w_bits, a_bits)
    kind = lambda flag: [n for n in known if methods.method(n).one_bit == flag]
    if one_bit and not m.one_bit:
        raise ValueError(
            f"task {task!r} has a 1-bit part: use method {_listed(kind(True))}, not {name!r}, "
            "which needs ≥ 2 bits in every part"
        )
    if not one_bit and m.one_bit:
        raise ValueError(
            f"method {name!r} is for tasks with a 1-bit part (the 1-bit methods are "
            f"{_listed(kind(True))}); task {task!r} needs method {_listed(kind(False))}"
        )
    if w_bits not in m.w_bits or a_bits not in m.a_bits:
        raise ValueError(
            f"method {name!r} supports weights of {_bits(m.w_bits)} and activations of {_bits(m.a_bits)}, "
            f"not task {task!r}"
        )
    group, per_channel = options.get("group_size"), options.get("per_channel", False)
    if group is not None and group not in m.group_sizes:
        allowed = ", ".join(map(str, m.group_sizes)) if m.group_sizes else "none (it has no per-group granularity)"
        raise ValueError(f"group_size={group} for method {name!r}: allowed {allowed}")
    if per_channel and "channel" not in m.granularities:
        raise ValueError(f"per_channel for method {name!r}: its granularities are {', '.join(m.granularities)}")
    if m.requires and importlib.util.find_spec(m.requires) is None:
        raise ValueError(f"method {name!r} needs {m.requires}, which is not installed: {m.install}")


def parse_scheme(task: str, method: str | None = None, **options) -> QuantScheme:
    """``parse_scheme("4W4A")``, ``parse_scheme("1W1A", method="bnn++")``,
    ``parse_scheme("4W", method="torchao", group_size=32)``; ``options`` set the other fields.

    The default method is "int" when every quantized part has ≥ 2 bits and "bnn" when one has 1 bit. Each method
    takes the tasks, bit-widths and granularities it declared when it was registered (``methods.Method``); anything
    else is refused here, before any computation.
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
    method = method or ("bnn" if 1 in (w_bits, a_bits) else "int")
    _check_method(method, task, w_bits, a_bits, options)
    keep = tuple(options.get("keep_fp", KEEP_FP))
    if not set(keep) <= set(KEEP_FP):
        raise ValueError(f"unknown keep_fp entries {sorted(set(keep) - set(KEEP_FP))}; valid: {', '.join(KEEP_FP)}")
    return QuantScheme(task, method, w_bits, a_bits, **{**options, "keep_fp": keep})


def scheme_named(name: str) -> QuantScheme:
    """A scheme from its name on the command line or in a notebook's parameters: ``TASK``, ``TASK:METHOD`` or
    ``TASK:METHOD-gN`` (``fp``, ``4W``, ``4W4A``, ``1W1A:adabin``, ``4W:lsq``, ``4W:torchao-g32``: groups of N
    weights); anything else is a ``ParameterError`` naming what is allowed."""
    task, _, method = name.partition(":")
    grouped = re.fullmatch(r"(.+)-g(\d+)", method)
    try:
        if grouped:
            return parse_scheme(task, grouped[1], group_size=int(grouped[2]))
        return parse_scheme(task, method or None)
    except ValueError as e:
        raise ParameterError(
            f"scheme {name!r}: {e}; allowed: TASK, TASK:METHOD or TASK:METHOD-gN, e.g. fp, 1W, 4W, 8W, 4W4A, "
            "1W1A:adabin, 4W:lsq, 4W:torchao-g32, 8W8A:fp8"
        ) from None
