"""One module per notebook: its cells, how its runs become tables, its claims, and what the notebook shows.

Each module opens with one block naming its cells, attacks, constants and the paper's numbers, and defines
``cells(cfg)`` (every cell the notebook needs, declared without reading data or computing), ``run(cfg)`` (the tidy
runs, computing what the cache lacks), ``summary``, ``claims`` and ``show`` (the notebook's tables, figures and text).
``NOTEBOOKS`` maps notebook names to modules, in the order ``make reproduce`` runs them, and ``OWN`` in a module names
the notebook's own parameters that its ``cells`` takes.

Declaring is pure. A notebook that must see results before it can declare the rest (notebook 05 its targets, 06 its
regimes, 08 its trials' targets) says so with ``stages(cfg)``: :class:`Stage` s in order, each declaring its cells once
the stages before it are computed, and each with a plan that reads nothing (an upper bound, for ``qlib.cost``).
:func:`stages` gives any notebook's (one stage, ``cells``, where the module declares none); :func:`compute_stages`
runs them; :func:`planned` lists every cell a notebook could need.

A grid is a list of entries (labels, {name: cell}): :func:`grid_cells` lists its cells and :func:`grid_rows`
makes one row per entry from the labels and the cells' values, so a grid is written once, as data.
"""

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ..executors import compute
from ..pipeline import Cell
from ..presets import Preset, from_notebook
from ..provenance import provenance
from ..registry import unknown_name

NOTEBOOKS = {
    "00_clean_baselines": "clean",
    "01_ptq": "ptq",
    "02_qat": "qat",
    "03_ablation": "ablation",
    "04_unlearnable": "unlearnable",
    "05_targeted": "targeted",
    "06_attack_strength": "strength",
    "07_evaluate_your_poison": "evaluate",
    "08_primary_claims": "verdicts",
    "09_backdoors": "backdoors",
    "10_modern_formats": "formats",
}
Entry = tuple[dict, dict[str, Cell]]


def experiment(notebook: str):
    """The module of ``notebook`` (a name such as ``01_ptq``, or a path to it)."""
    name = notebook.rsplit("/", 1)[-1].removesuffix(".ipynb")
    if name not in NOTEBOOKS:
        raise unknown_name("notebook", notebook, list(NOTEBOOKS))
    return importlib.import_module(f"{__name__}.{NOTEBOOKS[name]}")


def grid_cells(entries: list[Entry]) -> list[Cell]:
    return [c for _, cells in entries for c in cells.values()]


def grid_rows(entries: list[Entry], row: Callable[[dict, dict], dict]) -> pd.DataFrame:
    """One row per entry: ``row(labels, {name: the cell's value})``."""
    return pd.DataFrame([row(labels, {name: c.value() for name, c in cells.items()}) for labels, cells in entries])


def ensure(cells: list[Cell], progress: bool = True) -> None:
    """Compute what the cache lacks of ``cells``, in this process (``serial``, ``executors.threads_per_cell``): after
    ``python -m qlib grid`` this finds everything cached and returns at once."""
    compute(cells, "serial", progress=progress)


def start(preset: str, namespace: dict) -> tuple[Preset, float]:
    """A notebook's first step: its preset with the parameters cell's overrides (``presets.from_notebook``), and the
    time it started (for :func:`footer`)."""
    return from_notebook(preset, namespace), time.time()


def preset_table(cfg: Preset) -> pd.DataFrame:
    """The preset with the notebook's overrides, one field a row: every notebook's first table."""
    return pd.Series(cfg.asdict(), name="value").to_frame()


def footer(cfg: Preset, started: float, notebook: str) -> pd.DataFrame:
    """The provenance table that ends every notebook: machine, versions, preset, and the command that reruns it."""
    return pd.Series(
        {
            **provenance(cfg, started),
            "reproduce with": f"python -m qlib run notebooks/{notebook}.ipynb --preset {cfg.preset}",
        },
        name="value",
    ).to_frame()


@dataclass(frozen=True)
class Stage:
    """A named step of a notebook's declaration: ``declare()`` lists its cells and may read the values of the cells of
    the stages before it (computed by then); ``plan()`` lists every cell it could declare without reading anything
    (None: ``declare`` reads nothing)."""

    name: str
    declare: Callable[[], list[Cell]]
    plan: Callable[[], list[Cell]] | None = None

    def planned(self) -> list[Cell]:
        return (self.plan or self.declare)()


def stages(notebook: str, cfg: Preset, own: dict | None = None) -> list[Stage]:
    """Notebook ``notebook``'s stages under ``cfg``, with those of its own parameters ``own`` that its module names in
    ``OWN`` (the others belong to other notebooks)."""
    module = experiment(notebook)
    mine = {k: v for k, v in (own or {}).items() if k in getattr(module, "OWN", ())}
    if hasattr(module, "stages"):
        return module.stages(cfg, **mine)
    return [Stage("cells", lambda: module.cells(cfg, **mine))]


def planned(notebook: str, cfg: Preset, own: dict | None = None) -> list[Cell]:
    """Every cell ``notebook`` could need, declared without reading data or computing (``qlib.cost``, the tests):
    placeholders for the targets it would choose, every regime notebook 06 could choose."""
    return [c for stage in stages(notebook, cfg, own) for c in stage.planned()]


def compute_stages(
    notebooks: list[str], cfg: Preset, own: dict | None, run: Callable[[list[Cell], str], None]
) -> list[Cell]:
    """Declare and compute ``notebooks``' stages in order: stage k of every notebook together (``run(cells, name)``),
    once stage k − 1 of each is computed. Returns every cell declared."""
    staged = [stages(notebook, cfg, own) for notebook in notebooks]
    declared = []
    for k in range(max(map(len, staged), default=0)):
        now = [s[k] for s in staged if k < len(s)]
        cells = [c for stage in now for c in stage.declare()]
        run(cells, " + ".join(dict.fromkeys(stage.name for stage in now)))
        declared += cells
    return declared
