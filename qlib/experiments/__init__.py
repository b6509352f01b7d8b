"""One module per notebook: its cells, how its runs become tables, its claims, and what the notebook shows.

Each module opens with one block naming its cells, attacks, constants and the paper's numbers, and defines
``cells(cfg)`` (every cell the notebook needs, for ``python -m qlib grid`` and ``qlib.cost``), ``run(cfg)`` (the
tidy runs, computing what the cache lacks), ``summary``, ``claims`` and ``show`` (the notebook's tables, figures
and text). ``EXPERIMENTS`` maps notebook names to modules, in the order ``make reproduce`` runs them.

A grid is a list of entries (labels, {name: cell}): :func:`grid_cells` lists its cells and :func:`grid_rows`
makes one row per entry from the labels and the cells' values, so a grid is written once, as data.
"""

import importlib
import inspect
import time
from collections.abc import Callable

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


def ensure(cfg: Preset, cells: list[Cell], progress: bool = True) -> None:
    """Compute what the cache lacks of ``cells``, in this process (``serial``) with the preset's threads: after
    ``python -m qlib grid`` this finds everything cached and returns at once."""
    compute(cells, "serial", threads=cfg.threads, progress=progress)


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


def declared(notebook: str, cfg: Preset, own: dict | None = None, planning: bool = False) -> list[Cell]:
    """The cells notebook ``notebook`` needs under ``cfg`` and its own parameters ``own`` (those its module's ``cells``
    takes). ``planning``: declare without computing anything, with placeholder targets for the targeted experiment
    (which images they are does not change the work) and every regime notebook 06 could choose (an upper bound of
    its work), as ``qlib.cost`` does."""
    module = experiment(notebook)
    accepted = inspect.signature(module.cells).parameters
    kwargs = {k: v for k, v in (own or {}).items() if k in accepted}
    if planning and "chosen_targets" in accepted:
        kwargs["chosen_targets"] = [
            {"target": t, "target_index": t, "true_class": 0, "adversarial_class": 1} for t in range(cfg.targets)
        ]
    if planning and "chosen" in accepted:  # notebook 06: every regime its choice could pick
        kwargs["chosen"] = module.candidate_regimes()
    return module.cells(cfg, **kwargs)
