"""What a preset costs: the units of work each notebook does on an empty cache, and the hours they take.

``plan(cfg)`` walks each notebook's grid, built by the same functions its runner uses (``study.attack_grid``,
``qat_tables.ablation_grid``, ``targeted.trial_grid``), and names every cache entry a cell needs by the key the
runner would give it (``study.trained_key``, ``poison_key``, ``target_key``, ``accuracy_key``,
``targeted.victim_key``). An entry is counted once, in the first notebook that needs it, in the order
``make reproduce`` runs them, as the shared cache computes it once. Its units are those ``qlib.counters`` counts
when it is computed: optimizer steps and images per scheme for a training (``fit``), images for an evaluation,
and each attack's own unit (its predictor in ``counters.UNITS``). ``tests/test_cost.py`` runs the ``smoke`` grids on
an empty cache and checks that the counts executed are these, exactly.

Not counted: forward passes outside ``evaluate`` (PTQ calibration, a handful of batches; the targeted runner's
choice of targets, one pass over the test set), GC's one clean-gradient pass, and the restarts' unaugmented first
and last evaluations in gradient matching. Attacks that stop early (GC below its threshold, EM and REM below their
stop error) are counted at their maximum.

``table`` and ``summary`` multiply by unit costs in seconds (``bench/gpu_check.py`` writes them, per device).
"""

import ast
import json
from collections import Counter
from pathlib import Path

import pandas as pd

from . import targeted, ue_tables
from .attacks.base import poison_count
from .attacks.unlearnable import UNLEARNABLE
from .cache import key_hash
from .counters import UNITS
from .data import PROJECT_ROOT, SOURCES
from .grids import NOTEBOOKS
from .presets import Preset
from .registry import ParameterError
from .qat_tables import QAT_CELLS, ablation_attack, ablation_grid
from .quant import QuantScheme
from .study import (FP, GRADPC, PTQ_SCHEMES, QAT_SCHEMES, QUANTIZATION_AWARE, TRAINED_SURROGATE, accuracy_key,
                    attack_grid, poison_key, target_key, trained_key)
from .tables import PTQ_CELLS, QOA

REPLACING = (*UNLEARNABLE, "gradient_matching")  # attacks whose poisons replace their clean images (data.mix)


class PlannedPoison:
    """A poison not made yet, standing in for it in the keys of the models trained on it: its identity is its own
    cache key (the same key always makes the same poison)."""

    def __init__(self, name: str, key: dict, count: int):
        self.name, self.key, self.count = name, key, count

    def digest(self) -> str:
        return key_hash(self.key)


class Planner:
    """Counts the units of the cache entries a grid needs, each entry once. ``full``: the number of images in each
    split of the dataset (default: the dataset's own, ``data.Source.sizes``)."""

    def __init__(self, full: dict[str, int] | None = None):
        self.full = full
        self.seen: set[tuple[str, str]] = set()
        self.units = Counter()

    def size(self, cfg: Preset, split: str) -> int:
        """The number of images ``study.load_data`` gives for ``split``: the class-balanced subset, or all of them."""
        full = (self.full or SOURCES.get(cfg.dataset).sizes)[split]
        size = cfg.train_size if split == "train" else cfg.test_size
        return full if size is None else min(size, full)

    def new(self, kind: str, key: dict) -> bool:
        entry = (kind, key_hash(key))
        if entry in self.seen:
            return False
        self.seen.add(entry)
        return True

    def evaluation(self, images: int) -> None:
        self.units["eval images"] += images

    def trained(self, cfg: Preset, seed: int, scheme: QuantScheme, poison: PlannedPoison | None = None,
                curve: bool = True) -> None:
        """``study.trained_model``: ``fit`` on μ, μ + ν or μ with ν in place, a curve on the test set for FP."""
        n = self.size(cfg, "train")
        if not self.new("trained", trained_key(cfg, seed, scheme, range(n), poison, curve)):
            return
        images = n + (poison.count if poison is not None and poison.name not in REPLACING else 0)
        self.units[f"train steps/{scheme.name}"] += cfg.epochs * -(-images // cfg.batch_size)
        self.units[f"train images/{scheme.name}"] += cfg.epochs * images
        if scheme.is_fp and curve:
            self.evaluation(cfg.epochs * self.size(cfg, "test"))

    def attack(self, name: str, n: int, eps_d: float, params: dict) -> None:
        self.units[f"attack/{name}"] += UNITS.get(name)(n, eps_d, params)

    def poison(self, cfg: Preset, name: str, seed: int, eps_d: float, scheme: QuantScheme | None = None,
               **switches) -> PlannedPoison:
        """``study.attack_poison`` and what its ``make`` needs: GradPC's target, or the trained surrogate."""
        n = self.size(cfg, "train")
        key, params = poison_key(cfg, name, seed, eps_d, range(n), scheme, **switches)
        planned = PlannedPoison(name, key, poison_count(eps_d, n))
        if not self.new("poison", key):
            return planned
        if QUANTIZATION_AWARE.get(name, name) == "gc":
            self.trained(cfg, seed, FP)
            if self.new("target", target_key(cfg, seed, range(n))):
                self.attack("gradpc", n, eps_d, GRADPC)
        elif name in TRAINED_SURROGATE:
            self.trained(cfg, seed, FP)
        self.attack(name, n, eps_d, params)
        return planned

    def accuracy(self, cfg: Preset, seed: int, regime: str, scheme: QuantScheme, nu: PlannedPoison | None) -> None:
        """One reading of ``study.retrain_and_evaluate``: the model trained as the regime says, then evaluated."""
        n, n_test = self.size(cfg, "train"), self.size(cfg, "test")
        if self.new("accuracy", accuracy_key(cfg, seed, regime, scheme, range(n), range(n_test), nu)):
            self.trained(cfg, seed, scheme if regime == "qat" else FP, nu)
            self.evaluation(n_test)

    def attack_cells(self, cfg: Preset, grid: list[tuple]) -> None:
        """``study.attack_drops`` over ``grid``."""
        for seed, name, eps_d, regime, scheme in grid:
            nu = self.poison(cfg, name, seed, eps_d, scheme)
            self.accuracy(cfg, seed, regime, scheme, None)
            self.accuracy(cfg, seed, regime, scheme, nu)


def clean_notebook(p: Planner, cfg: Preset) -> None:
    """00: ``study.clean_baselines`` and ``study.clean_schemes`` (whose evaluations are not cached)."""
    n_test = p.size(cfg, "test")
    for seed in cfg.seeds:
        p.trained(cfg, seed, FP)
        p.evaluation((1 + len(PTQ_SCHEMES)) * n_test)
        for scheme in QAT_SCHEMES:
            p.trained(cfg, seed, scheme)
            p.evaluation(n_test)


def ptq_notebook(p: Planner, cfg: Preset, sweep_eps_d: list[float], sweep_attacks: list[str]) -> None:
    """01: Table 1, Table 2 (``study.gradpc_targets``, evaluations not cached) and the budget sweep."""
    p.attack_cells(cfg, attack_grid(cfg, QOA, [cfg.eps_d], PTQ_CELLS))
    n, n_test = p.size(cfg, "train"), p.size(cfg, "test")
    for seed in cfg.seeds:
        p.trained(cfg, seed, FP)
        if p.new("target", target_key(cfg, seed, range(n))):
            p.attack("gradpc", n, cfg.eps_d, GRADPC)
        p.evaluation((2 + 2 * len(PTQ_SCHEMES)) * n_test)
    p.attack_cells(cfg, attack_grid(cfg, sweep_attacks, sweep_eps_d, PTQ_CELLS))


def qat_notebook(p: Planner, cfg: Preset) -> None:
    """02: Table 3."""
    p.attack_cells(cfg, attack_grid(cfg, QOA + list(QUANTIZATION_AWARE), [cfg.eps_d], QAT_CELLS))


def ablation_notebook(p: Planner, cfg: Preset) -> None:
    """03: Table 4."""
    for seed, scheme, paq, ghat in ablation_grid(cfg):
        name, switches, _ = ablation_attack(scheme, paq, ghat)
        nu = p.poison(cfg, name, seed, cfg.eps_d, scheme if name == "gc_q" else None, **switches)
        p.accuracy(cfg, seed, "qat", scheme, None)
        p.accuracy(cfg, seed, "qat", scheme, nu)


def unlearnable_notebook(p: Planner, cfg: Preset) -> None:
    """04: Table 5."""
    ue = ue_tables.table5_preset(cfg)
    p.attack_cells(ue, attack_grid(ue, list(UNLEARNABLE), [ue_tables.EPS_D], ue_tables.UE_CELLS))


def targeted_notebook(p: Planner, cfg: Preset) -> None:
    """05: the targeted trials. Targets are placeholders with distinct indices: which images they are does not
    change the work."""
    cfg = targeted.targeted_preset(cfg)
    targeted.check_seeds(cfg)
    n, n_test = p.size(cfg, "train"), p.size(cfg, "test")
    p.trained(cfg, cfg.targeted_seeds[0], FP, curve=False)  # choose_targets' surrogate
    targets = pd.DataFrame({"target": range(cfg.targets), "target_index": range(cfg.targets),
                            "adversarial_class": [1] * cfg.targets})
    for t, seed, scheme, kind in targeted.trial_grid(cfg, targets):
        nu = None
        if kind != "none":
            surrogate = FP if kind == "oblivious" else scheme
            key = targeted.poison_key(cfg, seed, t, surrogate, range(n))
            nu = PlannedPoison("gradient_matching", key, poison_count(cfg.targeted_eps_d, n))
            if p.new("poison", key):
                p.trained(cfg, seed, surrogate, curve=False)
                p.attack("gradient_matching", n, cfg.targeted_eps_d, dict(cfg.gradient_matching))
        if p.new("targeted", targeted.victim_key(cfg, seed, scheme, t, range(n), range(n_test), nu)):
            p.trained(cfg, seed + targeted.VICTIM_SEED, scheme, nu, curve=False)
            p.evaluation(min(targeted.ACCURACY_IMAGES, n_test))


def sweep_defaults() -> dict:
    """Notebook 01's own parameters (the ε_d sweep), as its parameters cell sets them."""
    cell = next(c for c in json.loads((PROJECT_ROOT / "notebooks" / "01_ptq.ipynb").read_text())["cells"]
                if "parameters" in c["metadata"].get("tags", []))
    values = {}
    for node in ast.parse("".join(cell["source"])).body:
        if isinstance(node, ast.AnnAssign) and node.target.id in ("sweep_eps_d", "sweep_attacks"):
            values[node.target.id] = ast.literal_eval(node.value)
    return values


def plan(cfg: Preset, sweep: dict | None = None, full: dict[str, int] | None = None) -> dict[str, Counter]:
    """The units each notebook computes on an empty cache, run in order (00 first), by notebook name. ``sweep``:
    notebook 01's ``sweep_eps_d`` and ``sweep_attacks`` (default: its parameters cell's); ``full``: the dataset's
    split sizes when they are not its own (``Planner``)."""
    sweep = sweep or sweep_defaults()
    p, out = Planner(full), {}
    steps = (lambda: clean_notebook(p, cfg), lambda: ptq_notebook(p, cfg, sweep["sweep_eps_d"], sweep["sweep_attacks"]),
             lambda: qat_notebook(p, cfg), lambda: ablation_notebook(p, cfg), lambda: unlearnable_notebook(p, cfg),
             lambda: targeted_notebook(p, cfg))
    for name, step in zip(NOTEBOOKS, steps):
        p.units = Counter()
        step()
        out[name] = +p.units
    return out


def read_unit_costs(path: Path) -> dict:
    """A ``bench/gpu_check.py`` result: ``{"device": …, "seconds": {unit: seconds per unit}, …}``."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ParameterError(f"unit costs {str(path)!r} cannot be read as JSON: {e}") from None
    if not isinstance(record, dict) or not isinstance(record.get("seconds"), dict):
        raise ParameterError(f"unit costs {str(path)!r}: allowed is a bench/gpu_check.py result, a JSON object whose "
                             "'seconds' maps units to seconds per unit")
    return record


def with_processes(record: dict, processes: int) -> dict[str, float]:
    """The unit costs of ``record`` when ``processes`` trainings share the device: each training image costs its
    measured seconds divided by the throughput gain ``bench/gpu_check.py`` measured for that many processes (FP's
    for FP, 4W QAT's for every QAT scheme). Attacks and evaluations keep their serial cost (not measured)."""
    rates = record.get("processes", {})
    gain = {}
    for kind in ("fp", "4W"):
        if f"{kind} x{processes}" not in rates or f"{kind} x1" not in rates:
            raise ParameterError(f"processes={processes}: {record['device']}'s unit costs measured "
                                 f"{sorted(rates) or 'no concurrency'}; allowed: a count they measured")
        gain[kind] = rates[f"{kind} x{processes}"] / rates[f"{kind} x1"]
    return {unit: s / gain["fp" if unit == "train images/fp" else "4W"] if unit.startswith("train images/") else s
            for unit, s in record["seconds"].items()}


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Hours per notebook and in all from :func:`table`'s rows, with the units that had no cost (optimizer steps are
    priced through their images)."""
    rows = []
    for notebook, cells in table.groupby("notebook", sort=False):
        unpriced = cells[cells["seconds per unit"].isna() & ~cells.unit.str.startswith("train steps/")]
        rows.append({"notebook": notebook, "hours": cells.hours.sum(), "units without a cost": ", ".join(unpriced.unit)})
    rows.append({"notebook": "all", "hours": sum(r["hours"] for r in rows), "units without a cost": ""})
    return pd.DataFrame(rows)


def table(cfg: Preset, costs: dict | None = None) -> pd.DataFrame:
    """One row per notebook and unit: the count, and with ``costs`` the seconds per unit and the hours."""
    rows = []
    for notebook, units in plan(cfg).items():
        for unit, n in sorted(units.items()):
            row = {"notebook": notebook, "unit": unit, "count": n}
            if costs is not None:
                s = costs.get(unit)
                row |= {"seconds per unit": s, "hours": None if s is None else n * s / 3600}
            rows.append(row)
    return pd.DataFrame(rows)
