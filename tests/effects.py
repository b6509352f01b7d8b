"""Effects of training that tests assert, with bounds that survive the float differences between CPUs.

The same seed trains to different weights on different CPUs (AVX-512, AVX2 or no vector kernels, oneDNN's
instruction set, the thread count), and training amplifies the differences: a test that asserts an accuracy drop,
a success count or a ratio after training must hold with a margin. Every such test takes the ``effect`` fixture,
which parametrizes it by seed (``QLIB_EFFECT_SEEDS``, default ``0``), and checks its one statistic with
``effect.check(NAME, value)`` against ``BOUNDS[NAME]``.

How a bound is set (``make test-portability`` runs it, ``tests/portability.py`` is the code):
- each statistic is measured over a fixed matrix: the machine's default kernels; ``ATEN_CPU_CAPABILITY=avx2``
  with ``ONEDNN_MAX_CPU_ISA=AVX2``; ``ATEN_CPU_CAPABILITY=default`` with ``ONEDNN_MAX_CPU_ISA=SSE41`` (no vector
  kernels); seeds 0, 1 and 2 in each;
- the spread is max − min over all nine values, but never less than the statistic's resolution (one image of
  the test set for an accuracy, one for a count): a statistic that came out the same nine times may still move by
  one step elsewhere. The worst value is the one nearest the bound;
- the rule: the margin, |worst − bound|, is at least 3 × the spread. Another CPU moves a statistic the way
  another seed does (both are small perturbations of a chaotic training run), so a bound that clears the worst of
  nine such runs by three of their full ranges holds on machines we could not measure.
The measurements are committed in ``tests/effects.json``; ``tests/test_effect_margins.py`` checks every bound
against them, and a test fails until ``make test-portability`` has measured it again when the code that makes its
statistic changed: its own function, its module's fixtures, helpers and constants, ``conftest.py`` or
``ue_checks.py`` (not qlib itself: after changing the code an effect test exercises, rerun it).
"""

import ast
import hashlib
import inspect
import json
import operator
import os
from dataclasses import dataclass
from pathlib import Path

from qlib.machine import machine

RECORD = Path(__file__).with_name("effects.json")
RULE = 3.0  # margin ≥ RULE × spread


@dataclass(frozen=True)
class Bound:
    op: str  # ">=" (the statistic must be at least ``value``) or "<="
    value: float
    what: str  # the statistic, in words
    resolution: float = 0.0  # its smallest step: 1 for a count, 1/n for an accuracy on n images

    def spread(self, values) -> float:
        """max − min of ``values``, or the resolution if that is larger."""
        return max(max(values) - min(values), self.resolution)

    def holds(self, x: float) -> bool:
        return {">=": operator.ge, "<=": operator.le}[self.op](x, self.value)

    def margin(self, x: float) -> float:
        return x - self.value if self.op == ">=" else self.value - x


# name: bound. Each name is checked by exactly one test (``tests/portability.py`` refuses a name logged by two).
E2E, TOY, TOY_TEST = 1 / 1000, 1 / 160, 1 / 80  # one image of the end-to-end test set, the toy set, the toy test set
BOUNDS = {
    # unlearnable examples, end to end: clean-test accuracy of the small CNN trained on the clean 1,000-image
    # subset minus that of the same victims trained on the poisoned subset (tests/ue_checks.py)
    "em drop": Bound(">=", 0.05, "accuracy drop after training on EM's poison", E2E),
    "tap drop": Bound(">=", 0.10, "accuracy drop after training on TAP's poison", E2E),
    "sn drop": Bound(">=", 0.10, "accuracy drop after training on SN's poison", E2E),
    "ar drop": Bound(">=", 0.10, "accuracy drop after training on AR's poison", E2E),
    "ntga drop": Bound(">=", 0.10, "accuracy drop after training on NTGA's poison", E2E),
    "ops drop": Bound(">=", 0.05, "accuracy drop after training on OPS's poison", E2E),
    # unlearnable examples, the mechanism
    "sn linear fit": Bound(">=", 0.95, "training accuracy of a linear classifier on SN's noise alone", E2E),
    "ops linear fit": Bound(">=", 0.95, "training accuracy of a linear classifier on OPS's noise alone", E2E),
    "tap surrogate clean rate": Bound(
        "<=", 0.05, "share of clean images the trained surrogate puts in class y + 1", E2E
    ),
    "tap surrogate fooled": Bound(">=", 0.30, "share of TAP's poisons the trained surrogate puts in class y + 1", E2E),
    "dc generator wins": Bound(
        ">=",
        7,
        "fresh classifiers of 10 whose clean loss after a step on the trained "
        "generator's poison exceeds that after a step on the untrained's",
        1,
    ),
    "em descend loss ratio": Bound("<=", 0.90, "a trained model's loss on EM-descended images over its clean loss"),
    "em surrogate error ratio": Bound(
        "<=",
        0.5,
        "EM surrogate's error on the poisons over its error on the clean images (one of 300 images in about 0.2)",
        0.02,
    ),
    "em min-min loss ratio": Bound("<=", 1.0, "EM's last min-min loss over its first"),
    # gradient matching
    "gm descent loss ratio": Bound(
        "<=", 0.70, "target's adversarial loss after descending on the poisons over on the clean source images"
    ),
    "gm tiny problem wins over noise": Bound(
        ">=",
        6,
        "trials of 10 where the poisoned softmax regression's p(adv) is "
        "≥ e × that of one trained on sign noise of the same size",
        1,
    ),
    # training and quantization on toy problems
    "adabin 1W1A accuracy": Bound(
        ">=", 0.60, "test accuracy of 1W1A Adabin QAT on 2,000 Fashion-MNIST images", 1 / 2000
    ),
    "fit toy accuracy": Bound(">=", 0.95, "accuracy of the small CNN trained 4 epochs on the toy problem", TOY),
    "fit toy accuracy gain": Bound(">=", 0.30, "that accuracy minus the untrained model's", TOY),
    "ptq 8W accuracy change": Bound(
        "<=", 0.02, "|accuracy after 8-bit weight PTQ − FP accuracy| on the toy problem", TOY
    ),
    "ptq 8W8A accuracy change": Bound("<=", 0.03, "|accuracy after 8W8A PTQ − FP accuracy| on the toy problem", TOY),
    "qat 4W4A toy accuracy": Bound(">=", 0.60, "accuracy of 4W4A QAT on the toy problem (chance 0.25)", TOY),
    "qat 1W bnn toy accuracy": Bound(">=", 0.60, "accuracy of 1W BNN QAT on the toy problem (chance 0.25)", TOY),
    "qat 1W1A bnn++ toy accuracy": Bound(
        ">=", 0.60, "accuracy of 1W1A BNN++ QAT on the toy problem (chance 0.25)", TOY
    ),
    "qat 4W torchao-g32 toy accuracy": Bound(
        ">=", 0.60, "accuracy of QAT with torchao's per-group int4 weights on the toy problem (chance 0.25)", TOY_TEST
    ),
    "qat 4W8A torchao-g32 toy accuracy": Bound(
        ">=", 0.60, "accuracy of QAT with torchao's int4 weights, int8 dynamic activations, toy problem", TOY_TEST
    ),
    "qat 8W8A fp8 toy accuracy": Bound(
        ">=", 0.60, "accuracy of QAT with torchao's float8 weights and activations on the toy problem", TOY_TEST
    ),
    "gc_q 4W torchao-g32 objective ratio": Bound(
        "<=", 0.95, "GC-Q's final objective over its initial one through per-group int4 (20 epochs, toy problem)"
    ),
    "gradpc log10 loss rise at eps_w 0.5": Bound(
        ">=", -1.0, "log10 of the training loss of GradPC's target minus the clean model's"
    ),
    "gc convex objective ratio": Bound("<=", 0.01, "GC's final objective over its initial one, logistic regression"),
    "gc convex distance ratio": Bound(
        "<=", 0.20, "distance of the model retrained on μ+ν_GC to ŵ over the clean optimum's"
    ),
    "harness clean toy accuracy": Bound(
        ">=", 0.90, "clean FP accuracy in the retrain-and-evaluate harness, toy problem", TOY_TEST
    ),
    "harness 8-bit PTQ clean accuracy change": Bound(
        "<=", 0.05, "|clean 8W PTQ accuracy − clean FP accuracy|", TOY_TEST
    ),
}


def seeds() -> list[int]:
    """The seeds every effect test runs: ``QLIB_EFFECT_SEEDS`` (comma-separated), default 0."""
    text = os.environ.get("QLIB_EFFECT_SEEDS", "0")
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise ValueError(f"QLIB_EFFECT_SEEDS={text!r} must be comma-separated integers, e.g. 0,1,2") from None


def kernels() -> dict:
    """What decides this process's float results: the machine record (CPU, torch's CPU capability, threads, torch)
    and the kernel variables."""
    record = machine("cpu")
    return {
        "cpu": record["cpu"],
        "capability": record["cpu capability"],
        "threads": record["threads"],
        "torch": record["torch"],
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
    }


SHARED = ("conftest.py", "ue_checks.py")  # helpers every effect test may use


def source_digest(function) -> str:
    """A digest, blind to comments and formatting, of what makes an effect test's statistic: its module without the
    other tests (so with its fixtures, helpers and constants) and the shared helpers."""
    module = ast.parse(Path(inspect.getsourcefile(function)).read_text())
    module.body = [
        node
        for node in module.body
        if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and node.name != function.__name__)
    ]
    parts = [ast.dump(module)] + [ast.dump(ast.parse((Path(__file__).parent / f).read_text())) for f in SHARED]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def recorded() -> dict:
    return json.loads(RECORD.read_text()) if RECORD.exists() else {"effects": {}}


class Effect:
    """What an effect test gets: its ``seed`` and ``check(name, value)``."""

    def __init__(self, seed: int, function, nodeid: str):
        self.seed, self.function, self.nodeid = seed, function, nodeid

    def check(self, name: str, value: float) -> None:
        if name not in BOUNDS:
            raise KeyError(f"effect {name!r} has no bound in tests/effects.py BOUNDS; known: {', '.join(BOUNDS)}")
        bound, value = BOUNDS[name], float(value)
        digest = source_digest(self.function)
        log = os.environ.get("QLIB_EFFECT_LOG")
        if log:
            line = json.dumps(
                {
                    "effect": name,
                    "seed": self.seed,
                    "value": value,
                    "test": self.nodeid.split("[")[0],
                    "entry": os.environ.get("QLIB_EFFECT_ENTRY"),
                    "source": digest,
                    **kernels(),
                }
            )
            with open(log, "a") as f:
                f.write(line + "\n")
        assert bound.holds(value), f"{name}: {bound.what} is {value:.4f}, the bound is {bound.op} {bound.value}"
        measured = recorded()["effects"].get(name)
        if not log and measured is not None:
            assert measured["source"] == digest, (
                f"{name}: {self.nodeid} changed since its portability measurement; rerun `make test-portability`"
            )
