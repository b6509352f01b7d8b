"""The units of work a run does, counted where the work is done: the other half of the cost model (``qlib.cost``).

``fit`` counts optimizer steps and training images per scheme, ``evaluate`` the images it classifies, and every
attack counts its own unit in its loop (``count("attack/<name>", n)``). ``counting()`` collects the counts of a
block, so a test can compare what ran with what ``qlib.cost`` predicted from the grid. Each attack also registers
in ``UNITS`` the function that predicts its count from its settings: ``units(n, eps_d, params) -> int``, with ``n``
the size of the clean training set and ``params`` the attack's keyword arguments (missing ones take the defaults).

Unit names:
- ``train steps/<scheme>`` and ``train images/<scheme>``: optimizer steps and images trained on, per scheme name
  (``fp``, ``4W4A``, ``1W bnn``, …);
- ``eval images``: images classified by ``evaluate``;
- ``attack/<name>``: the attack's own unit (its ``UNITS`` docstring says what it is).
"""

import contextlib
import inspect
from collections import Counter
from collections.abc import Callable

from .registry import Registry

UNITS = Registry("attack unit")
_ACTIVE: list[Counter] = []


def count(unit: str, n: int = 1) -> None:
    """Add ``n`` of ``unit`` to every open ``counting()`` block (nothing when none is open)."""
    for counter in _ACTIVE:
        counter[unit] += n


@contextlib.contextmanager
def counting():
    """Yield a ``Counter`` of the units counted inside the block."""
    counter = Counter()
    _ACTIVE.append(counter)
    try:
        yield counter
    finally:
        _ACTIVE.remove(counter)


def settings(attack: Callable, params: dict) -> dict:
    """``params`` over the defaults of ``attack``'s signature: the settings a call with ``params`` runs with, for a
    ``UNITS`` predictor. A name the attack does not take raises TypeError, as the call would."""
    signature = inspect.signature(attack)
    signature.bind_partial(**params)
    defaults = {k: p.default for k, p in signature.parameters.items() if p.default is not p.empty}
    return {**defaults, **params}
