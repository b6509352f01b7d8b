"""What a preset costs: the units of work each notebook does on an empty cache, and the hours they take.

``plan(cfg)`` sums the units of the cells each notebook declares (``qlib.experiments``: the same cells ``python -m
qlib grid`` computes); each cell declares its own (``qlib.cells``). A cell is counted once, in the first notebook
that needs it, in the order ``make reproduce`` runs them, as the shared cache computes it once. Its units are those
``qlib.counters`` counts when it is computed: optimizer steps and images per scheme for a training (``fit``), images
for an evaluation, and each attack's own unit (its predictor in ``counters.UNITS``). ``tests/test_cost.py`` computes
the ``smoke`` cells on an empty cache and checks that the counts executed are these, exactly.

Not counted: forward passes outside ``evaluate`` (PTQ calibration, a handful of batches; the targeted runner's
choice of targets, one pass over the test set), GC's one clean-gradient pass, and the restarts' unaugmented first
and last evaluations in gradient matching. Attacks that stop early (GC below its threshold, EM and REM below their
stop error) are counted at their maximum.

``table`` and ``summary`` multiply by unit costs in seconds (``bench/gpu_check.py`` writes them, per device).
"""

import json
from collections import Counter
from pathlib import Path

import pandas as pd

from .experiments import NOTEBOOKS, planned
from .pipeline import graph
from .presets import Preset
from .registry import ParameterError


def plan(cfg: Preset, own: dict | None = None, notebooks=tuple(NOTEBOOKS)) -> dict[str, Counter]:
    """The units each of ``notebooks`` computes on an empty cache, run in order (00 first), by notebook name: the
    units of the cells it could declare (``experiments.planned``: targets as placeholders, every regime notebook 06
    could choose) that no earlier notebook declared.
    ``own``: the notebooks' own parameters (default: their modules' defaults)."""
    seen, out = set(), {}
    for notebook in notebooks:
        units = Counter()
        for cell in graph(planned(notebook, cfg, own)):
            if cell.id not in seen:
                seen.add(cell.id)
                units.update(cell.units)
        out[notebook] = +units
    return out


def read_unit_costs(path: Path) -> dict:
    """A ``bench/gpu_check.py`` result: ``{"device": …, "seconds": {unit: seconds per unit}, …}``."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ParameterError(f"unit costs {str(path)!r} cannot be read as JSON: {e}") from None
    if not isinstance(record, dict) or not isinstance(record.get("seconds"), dict):
        raise ParameterError(
            f"unit costs {str(path)!r}: allowed is a bench/gpu_check.py result, a JSON object whose "
            "'seconds' maps units to seconds per unit"
        )
    return record


def with_processes(record: dict, processes: int) -> dict[str, float]:
    """The unit costs of ``record`` when ``processes`` trainings share the device: each training image costs its
    measured seconds divided by the throughput gain ``bench/gpu_check.py`` measured for that many processes (FP's
    for FP, 4W QAT's for every QAT scheme). Attacks and evaluations keep their serial cost (not measured)."""
    rates = record.get("processes", {})
    gain = {}
    for kind in ("fp", "4W"):
        if f"{kind} x{processes}" not in rates or f"{kind} x1" not in rates:
            raise ParameterError(
                f"processes={processes}: {record['device']}'s unit costs measured "
                f"{sorted(rates) or 'no concurrency'}; allowed: a count they measured"
            )
        gain[kind] = rates[f"{kind} x{processes}"] / rates[f"{kind} x1"]
    return {
        unit: s / gain["fp" if unit == "train images/fp" else "4W"] if unit.startswith("train images/") else s
        for unit, s in record["seconds"].items()
    }


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Hours per notebook and in all from :func:`table`'s rows, with the units that had no cost (optimizer steps are
    priced through their images)."""
    rows = []
    for notebook, cells in table.groupby("notebook", sort=False):
        unpriced = cells[cells["seconds per unit"].isna() & ~cells.unit.str.startswith("train steps/")]
        rows.append(
            {"notebook": notebook, "hours": cells.hours.sum(), "units without a cost": ", ".join(unpriced.unit)}
        )
    rows.append({"notebook": "all", "hours": sum(r["hours"] for r in rows), "units without a cost": ""})
    return pd.DataFrame(rows)


def table(cfg: Preset, costs: dict | None = None) -> pd.DataFrame:
    """One row per notebook and unit: the count, and with ``costs`` the seconds per unit and the hours."""
    rows = []
    for notebook, units in plan(cfg).items():
        for unit, n in sorted(units.items()) or [("none", 0)]:  # a notebook with no work (08 without comparisons)
            row = {"notebook": notebook, "unit": unit, "count": n}
            if costs is not None:
                s = costs.get(unit)
                row |= {"seconds per unit": s, "hours": 0.0 if n == 0 else None if s is None else n * s / 3600}
            rows.append(row)
    return pd.DataFrame(rows)
