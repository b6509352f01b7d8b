"""Cells and the pipeline that computes them.

A *cell* is one unit of work of the study: a training, a GradPC target, a poison, an evaluation, a targeted victim.
It has a kind, a content key, the cells whose results it reads (its inputs), the function that computes it, and the
units of work it does (``qlib.counters``' names, for ``qlib.cost``). Its key is the cache key of its entry: what
determines the result, including the version of its kind's code (``qlib.cells.VERSIONS``) and, for a poison, of
its attack (``Needs.version``), so a cache shared across qlib versions never serves an entry made by other code.
A cell's result is its cache entry: computing a cell writes the entry, reading it (:meth:`Cell.value`) loads it.

An experiment declares its cells; :func:`pending` resolves the graph (inputs first, each key once) and skips what
the cache holds; ``qlib.executors.compute`` has an executor compute the rest in dependency order.
"""

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from . import cache


@dataclass(frozen=True, eq=False)
class Cell:
    """One unit of work: ``fn(cell)`` computes it (or loads it from the cache) and returns its value. ``args`` are
    what ``fn`` needs beyond the key (the preset, schemes, …); ``fn`` and ``args`` must pickle, as executors send
    cells to other processes and machines."""

    kind: str
    key: dict
    fn: Callable[["Cell"], Any]
    args: dict = field(default_factory=dict)
    inputs: tuple["Cell", ...] = ()
    units: Counter = field(default_factory=Counter)
    label: str = ""

    @cached_property
    def id(self) -> str:
        """``<kind>/<hash of the key>``: the cell's identity, and its entry's path under the cache root."""
        return f"{self.kind}/{cache.key_hash(self.key)}"

    def done(self) -> bool:
        """Does the cache hold this cell's entry?"""
        return cache.has(self.kind, self.key)

    def value(self):
        """The cell's result: loaded from the cache, or computed here (and its missing inputs with it) if absent."""
        return self.fn(self)

    def __repr__(self) -> str:
        return f"Cell({self.id}{', ' + self.label if self.label else ''})"


class GraphError(ValueError):
    """The cells do not form a directed acyclic graph."""


def graph(cells: Iterable[Cell]) -> list[Cell]:
    """Every cell ``cells`` need, their inputs included, once each (by id), inputs before the cells that read them.
    Raises :class:`GraphError` on a cycle."""
    order, state = [], {}  # id -> "open" while its inputs are being visited, then the cell
    for root in cells:
        stack = [(root, iter(root.inputs))]
        if _enter(root, state, stack[:0]):
            continue
        while stack:
            cell, inputs = stack[-1]
            child = next(inputs, None)
            if child is None:
                stack.pop()
                state[cell.id] = cell
                order.append(cell)
            elif not _enter(child, state, stack):
                stack.append((child, iter(child.inputs)))
    return order


def _enter(cell: Cell, state: dict, stack: list) -> bool:
    """Mark ``cell`` open; True if it was seen already (done), raising on a cycle."""
    seen = state.get(cell.id)
    if seen == "open":
        raise GraphError(f"the cells form a cycle: {' -> '.join(c.id for c, _ in stack)} -> {cell.id}")
    if seen is not None:
        return True
    state[cell.id] = "open"
    return False


def pending(cells: Iterable[Cell]) -> list[Cell]:
    """The cells of :func:`graph` whose entries the cache lacks, in dependency order."""
    return [c for c in graph(cells) if not c.done()]


def run(cell: Cell, threads: int) -> dict:
    """Compute ``cell`` with torch pinned to ``threads`` intra-op threads (the thread count changes trained weights
    bit for bit, so every executor runs every cell with the preset's ``threads``). Returns {"seconds": its wall
    time, "computed": whether this process computed it (False: another process did, and this one waited for its
    entry and loaded it)}."""
    entry = cache.cache_root() / cell.id
    before, computed_before = torch.get_num_threads(), entry in cache.COMPUTED
    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        cell.value()
    finally:
        torch.set_num_threads(before)
    return {"seconds": time.perf_counter() - start, "computed": entry in cache.COMPUTED and not computed_before}
