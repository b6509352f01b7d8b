"""Notebook 08: the verdicts. The preset's primary comparisons (``qlib.design``), decided by the group-sequential
design of ``qlib.stats`` (repeated confidence intervals, O'Brien-Fleming spending, Bonferroni within each claim).

Cells, per comparison and seed: each side's poison and its clean and poisoned accuracy (the attack grid's cells,
``attack_grid``; GC-Q's Table 4 switches as notebook 03 passes them), in the comparison's regime (``regime``: the
model with notebook 06's settings, the constraint mode, the training-set size). A seed's difference is better's
drop minus worse's (points; positive: the claim's direction).

Stages, in order: (1) the pilot seeds, for every comparison: the spread of its differences and the seeds a fixed
paired t-test would need for power 0.9 at δ (reported, never used to decide); (2) look k: the first k groups of the
deciding seeds, for the comparisons still open; a comparison whose repeated interval shows a direction stops, the
others get the next group, up to the cap, where negligible is decided too. :func:`decide` runs the stages with any executor and computes only the cells the
cache lacks; :func:`cells` lists every cell the design could need (the cost model's upper bound).
"""

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from .. import scoreboard
from ..attacks.base import needs
from ..cells import accuracy, poison
from ..design import CLAIMS, Design, Primary, Side
from ..pipeline import Cell, compute
from ..presets import Preset
from ..stats import ALPHA, DESIGN_POWER, PRIMARY_VERDICTS, look, seeds_for_power, spending_bounds
from . import strength

COLUMNS = ["id", "claim", "comparison", "δ", "pilot sd", "seeds for power", "looks", "seeds", "effect", "low", "high",
           "size", "verdict"]


def regime(cfg: Preset, c: Primary) -> Preset:
    """``cfg`` for comparison ``c``: notebook 06's model settings and constraint mode, and the training-set size."""
    model = c.model or cfg.model
    rcfg = strength.regime(cfg, model, c.bounds, cfg.seeds) if model in strength.MODELS else cfg
    return replace(rcfg, train_size=c.train_size) if c.train_size else rcfg


def side_cells(cfg: Preset, c: Primary, side: Side, seed: int) -> dict[str, Cell]:
    """One side's cells for ``seed``: the poison (against ``side.scheme`` if the attack is quantization-aware) and
    the clean and poisoned accuracy in its setting."""
    rcfg = regime(cfg, c)
    aware = needs(side.attack).scheme == "attacked"
    nu = poison(rcfg, side.attack, seed, c.eps_d, side.scheme if aware else None, **dict(side.switches))
    return {"poison": nu, "clean": accuracy(rcfg, seed, side.regime, side.scheme),
            "poisoned": accuracy(rcfg, seed, side.regime, side.scheme, nu)}


def seed_cells(cfg: Preset, c: Primary, seeds) -> list[Cell]:
    return [cell for s in seeds for side in (c.better, c.worse) for cell in side_cells(cfg, c, side, s).values()]


def differences(cfg: Preset, c: Primary, seeds) -> np.ndarray:
    """Per seed: better's drop minus worse's, in points (the cells must be computed)."""
    def drop(side, s):
        cells = side_cells(cfg, c, side, s)
        return cells["poisoned"].value()["acc"] - cells["clean"].value()["acc"]

    return np.array([100 * (drop(c.better, s) - drop(c.worse, s)) for s in seeds])


def cells(cfg: Preset) -> list[Cell]:
    """Every cell the design could need: pilot seeds and all deciding seeds up to the cap, for every comparison."""
    design = cfg.design
    if design is None:
        return []
    seeds = list(design.pilot_seeds) + design.seeds
    return [cell for c in design.comparisons for cell in seed_cells(cfg, c, seeds)]


def decide(cfg: Preset, executor: str = "serial", workers: int | None = None, progress: bool = True) -> dict:
    """Run the design's stages (module docstring), computing what the cache lacks with ``executor``. Returns
    {"verdicts": one row per comparison (``COLUMNS``), "looks": one row per comparison and look taken, "pilot":
    the pilot differences, "design": the design, "cells" and "runs": the work done, as ``pipeline.compute`` counts
    it}; empty tables without primary comparisons."""
    design, work = cfg.design, {"cells": 0, "runs": {}}
    if design is None:
        return {"verdicts": pd.DataFrame(columns=COLUMNS), "looks": pd.DataFrame(), "pilot": pd.DataFrame(), "design": None} | work

    def run(cells, desc):
        done = compute(cells, executor, threads=cfg.threads, workers=workers, address=cfg.ray_address,
                       gpus=cfg.gpus_per_cell, progress=progress, desc=desc)
        work["cells"] += done["cells"]
        work["runs"] |= done["runs"]

    run([x for c in design.comparisons for x in seed_cells(cfg, c, design.pilot_seeds)], "primary: pilot")
    pilot = {c.id: differences(cfg, c, design.pilot_seeds) for c in design.comparisons}
    bounds = {claim: spending_bounds(np.array(design.looks) / design.cap, ALPHA / len(design.family(claim)))
              for claim in {c.claim for c in design.comparisons}}
    open_, looks = list(design.comparisons), []
    for k, n in enumerate(design.looks):
        seeds = design.seeds[:n]
        run([x for c in open_ for x in seed_cells(cfg, c, seeds)], f"primary: look {k + 1} ({n} seeds)")
        still = []
        for c in open_:
            r = look(differences(cfg, c, seeds), c.delta, bounds[c.claim][k], final=k == len(design.looks) - 1)
            looks.append({"id": c.id, "look": k + 1, "seeds": n, "bound": bounds[c.claim][k], **r})
            if r["verdict"] is None:
                still.append(c)
        open_ = still
    return {"verdicts": verdict_table(design, pilot, pd.DataFrame(looks)), "looks": pd.DataFrame(looks),
            "pilot": pd.DataFrame([{"id": i, **{f"seed {s}": d for s, d in zip(design.pilot_seeds, v)}} for i, v in pilot.items()]),
            "design": design} | work


def verdict_table(design: Design, pilot: dict, looks: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for c in design.comparisons:
        last = looks[looks.id == c.id].iloc[-1]
        sd = float(np.std(pilot[c.id], ddof=1))
        needed = seeds_for_power(sd, c.delta, ALPHA / len(design.family(c.claim)), DESIGN_POWER)
        rows.append({"id": c.id, "claim": c.claim, "comparison": c.text, "δ": c.delta, "pilot sd": sd,
                     "seeds for power": needed if needed is not None else math.inf, "looks": int(last.look),
                     "seeds": int(last.n), "effect": last["mean"], "low": last.low, "high": last.high, "size": last["size"],
                     "verdict": last.verdict})
    return pd.DataFrame(rows, columns=COLUMNS)


def records(verdicts: pd.DataFrame) -> list[dict]:
    """The verdict table as JSON-ready records (the index's scoreboard and ``make replicate`` read these)."""
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v.item() if hasattr(v, "item") else v)
             for k, v in row.items()} for row in verdicts.to_dict("records")]


# -- what the notebook shows --


def design_table(cfg: Preset) -> pd.DataFrame:
    """The declared design: per comparison its claim, regime, sides, δ and why it was chosen."""
    d = cfg.design
    if d is None:
        return pd.DataFrame(columns=["id", "claim", "comparison", "δ (points)", "why"])
    return pd.DataFrame([{"id": c.id, "claim": f"{c.claim} {CLAIMS[c.claim]}", "comparison": c.text, "δ (points)": c.delta,
                          "why": c.why} for c in d.comparisons])


def show_verdicts(verdicts: pd.DataFrame) -> None:
    """Display the verdict table, its records attached for the index's scoreboard."""
    scoreboard.show_verdicts(verdicts, records(verdicts))


def figure(result: dict):
    """Per comparison: the effect with its last repeated confidence interval and the ±δ band (points)."""
    import matplotlib.pyplot as plt

    v = result["verdicts"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(v), 1) + 1.2))
    colours = {"holds": "#2e7d32", "fails": "#c62828", "negligible": "#1565c0", "undecided": "#9e9e9e"}
    for y, (_, r) in enumerate(v.iterrows()):
        ax.fill_betweenx([y - 0.35, y + 0.35], -r["δ"], r["δ"], color="#e3f2fd", lw=0)
        ax.errorbar(r.effect, y, xerr=[[r.effect - r.low], [r.high - r.effect]], fmt="o", color=colours[r.verdict], capsize=3)
        ax.text(1.01, y, f"{r.verdict} ({r.seeds} seeds)", transform=ax.get_yaxis_transform(), va="center", fontsize=8)
    ax.axvline(0, c="grey", lw=0.8)
    ax.set_yticks(range(len(v)), [f"{r.id}: claim {r.claim}" for _, r in v.iterrows()])
    ax.invert_yaxis()
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("better's drop − worse's (points, symlog); band: ±δ; bar: repeated 95% interval")
    fig.tight_layout()
    return fig


def headline(cfg: Preset, result: dict) -> str:
    v = result["verdicts"]
    if v.empty:
        return f"**Verdicts:** preset {cfg.preset} declares no primary comparisons."
    counts = ", ".join(f"{(v.verdict == k).sum()} {k}" for k in PRIMARY_VERDICTS)
    per_claim = "; ".join(f"claim {claim}: " + ", ".join(f"{r.id} {r.verdict}" for _, r in g.iterrows())
                          for claim, g in v.groupby("claim"))
    d = result["design"]
    return (f"**Verdicts of the {len(v)} primary comparisons ({cfg.dataset}):** {counts}. {per_claim}. Each decided on "
            f"fresh seeds from {d.first_seed} in groups of {d.group} (cap {d.cap}), pilot seeds {list(d.pilot_seeds)} "
            f"only sized the design.")
