"""Notebook 08: the verdicts. The preset's primary comparisons (``qlib.design``), decided by the group-sequential
design of ``qlib.stats`` (repeated confidence intervals, O'Brien-Fleming spending, Bonferroni within each claim).

Cells, per comparison and seed: each side's poison and its clean and poisoned accuracy (the attack grid's cells,
``attack_grid``; GC-Q's Table 4 switches as notebook 03 passes them), in the comparison's regime (``regime``: the
model with notebook 06's settings, the constraint mode, the training-set size). A seed's difference is better's
drop minus worse's (points; positive: the claim's direction).

Stages, in order: (1) the pilot seeds, for every comparison: the spread of its differences and the seeds a fixed
paired t-test would need for power 0.9 at δ (reported, never used to decide); (2) look k: the first k groups of the
deciding seeds, for the comparisons still open; a comparison whose repeated interval shows a direction stops, the
others get the next group, up to the cap, where negligible is decided too. :func:`decide` runs the stages with any
executor and computes only the cells the cache lacks; :func:`cells` lists every cell the design could need (the cost
model's upper bound).

Targeted comparisons (``design.Targeted``), after the others: (1) per pilot and deciding seed, its pretrained model
(the seed's clean FP ``trained`` cell) and its ``per_seed`` targets (``cells.targets``); (2) per trial, the
gradient-matching poisons made in the fine-tuning set against the pretrained model, the FP victim fine-tuned
without them (the rate without poisons) and each side's victim fine-tuned with them (``cells.finetuned``,
``cells.outcome``); (3) the pilot trials' share of discordant pairs sizes it (``stats.trials_for_power``), and the
deciding trials decide it (``stats.paired_rates``, at the claim's Bonferroni level).

A replication (``python -m qlib replicate``) runs every stage but the pilots: they size the design and never decide.
"""

import math
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import scoreboard
from ..attacks.base import needs
from ..cells import accuracy, finetuned, outcome, poison, targets
from ..design import CLAIMS, Design, Primary, Side, Targeted
from ..executors import compute
from ..paper import FP
from ..pipeline import Cell
from ..presets import Preset
from ..stats import (
    ALPHA,
    DESIGN_POWER,
    PRIMARY_VERDICTS,
    look,
    paired_rates,
    rate,
    seeds_for_power,
    spending_bounds,
    trials_for_power,
)
from . import Stage, strength
from .targeted import placeholders

COLUMNS = [
    "id",
    "claim",
    "comparison",
    "unit",
    "δ",
    "pilot sd",
    "seeds for power",
    "looks",
    "seeds",
    "effect",
    "low",
    "high",
    "size",
    "verdict",
]  # unit "seed", or "trial" for a targeted comparison (its "seeds" columns count trials)


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
    return {
        "poison": nu,
        "clean": accuracy(rcfg, seed, side.regime, side.scheme),
        "poisoned": accuracy(rcfg, seed, side.regime, side.scheme, nu),
    }


def seed_cells(cfg: Preset, c: Primary, seeds) -> list[Cell]:
    return [cell for s in seeds for side in (c.better, c.worse) for cell in side_cells(cfg, c, side, s).values()]


def differences(cfg: Preset, c: Primary, seeds) -> np.ndarray:
    """Per seed: better's drop minus worse's, in points (the cells must be computed)."""

    def drop(side, s):
        cells = side_cells(cfg, c, side, s)
        return cells["poisoned"].value()["acc"] - cells["clean"].value()["acc"]

    return np.array([100 * (drop(c.better, s) - drop(c.worse, s)) for s in seeds])


def trial_cells(cfg: Preset, t: Targeted, seed: int, target: dict) -> dict[str, Cell]:
    """One trial's cells: the poisons (gradient matching with the comparison's settings, made in the fine-tuning
    set against the seed's pretrained model) and the victims' outcomes: "clean" (FP, no poisons), "worse", "better"."""
    nu = poison(
        cfg,
        "gradient_matching",
        seed,
        t.eps_d,
        target_index=target["target_index"],
        adversarial_class=target["adversarial_class"],
        curve=False,
        finetune=t.finetune_size,
        **dict(t.settings),
    )
    victim = lambda scheme, p: outcome(
        cfg,
        finetuned(cfg, seed, scheme, t.finetune_size, t.finetune_epochs, t.finetune_lr, p),
        target["target_index"],
        target["adversarial_class"],
    )
    return {"poison": nu, "clean": victim(FP, None), "worse": victim(t.worse[1], nu), "better": victim(t.better[1], nu)}


def trials(cfg: Preset, t: Targeted, seeds) -> list[dict]:
    """One record per trial of ``seeds`` (their targets computed): seed, target, classes, each victim's success and
    p(adversarial class), the victims' test accuracy (the cells must be computed)."""
    out = []
    for s in seeds:
        for target in targets(cfg, s, t.per_seed).value()["targets"]:
            row = {"id": t.id, "seed": s, **target}
            for side, c in trial_cells(cfg, t, s, target).items():
                if side != "poison":
                    v = c.value()
                    row |= {
                        f"{side} success": int(v["pred"] == target["adversarial_class"]),
                        f"{side} p_adv": v["p_adv"],
                        f"{side} acc": v["acc"],
                    }
            out.append(row)
    return out


def pairs(rows: list[dict]) -> list[tuple[int, int]]:
    """(worse's success, better's success) per trial: what ``stats.paired_rates`` reads."""
    return [(r["worse success"], r["better success"]) for r in rows]


def target_cells(cfg: Preset) -> list[Cell]:
    """Each targeted comparison's targets cells, one per pilot and deciding seed."""
    design = cfg.design
    if design is None:
        return []
    seeds = lambda t: list(design.pilot_seeds) + design.targeted_seeds(t)
    return [targets(cfg, s, t.per_seed) for t in design.targeted for s in seeds(t)]


def cells(cfg: Preset, planning: bool = False) -> list[Cell]:
    """Every cell the design could need: pilot seeds and all deciding seeds up to the cap, for every comparison; for a
    targeted comparison each seed's targets cell and the trials of the targets it chose (computed by then), or, in
    ``planning``, of placeholders (which images they are does not change the work)."""
    design = cfg.design
    if design is None:
        return []
    seeds = list(design.pilot_seeds) + design.seeds
    out = [cell for c in design.comparisons for cell in seed_cells(cfg, c, seeds)]
    for t in design.targeted:
        for s in list(design.pilot_seeds) + design.targeted_seeds(t):
            cell = targets(cfg, s, t.per_seed)
            picked = placeholders(t.per_seed) if planning else cell.value()["targets"]
            out += [cell] + [x for target in picked for x in trial_cells(cfg, t, s, target).values()]
    return out


def stages(cfg: Preset) -> list:
    """Every cell the design could need (:func:`cells`), its targeted comparisons' targets first. The verdicts
    themselves are reached by :func:`decide`, which computes only what each look needs."""
    return [
        Stage("primary targets", lambda: target_cells(cfg)),
        Stage("primary comparisons", lambda: cells(cfg), plan=lambda: cells(cfg, planning=True)),
    ]


def decide(cfg: Preset, executor: str = "serial", progress: bool = True, pilot: bool = True, **execution) -> dict:
    """Run the design's stages (module docstring), computing what the cache lacks with ``executor`` (and
    ``execution``: ``executors.compute``'s threads, workers, address and gpus); without
    ``pilot`` (a replication: the pilot sizes the design and never decides) the pilot stages are skipped and the
    rows' "pilot sd" and "seeds for power" are NaN. Returns
    {"verdicts": one row per comparison (``COLUMNS``), "looks": one row per comparison and look taken, "pilot":
    the pilot differences, "trials": one row per targeted trial (:func:`trials`, with its "stage": pilot or
    decide), "design": the design, "cells" and "runs": the work done, as ``executors.compute`` counts it}; empty
    tables without primary comparisons."""
    design, work = cfg.design, {"cells": 0, "runs": {}}
    if design is None:
        return {
            "verdicts": pd.DataFrame(columns=COLUMNS),
            "looks": pd.DataFrame(),
            "pilot": pd.DataFrame(),
            "trials": pd.DataFrame(),
            "design": None,
        } | work

    def run(cells, desc):
        done = compute(cells, executor, progress=progress, desc=desc, **execution)
        work["cells"] += done["cells"]
        work["runs"] |= done["runs"]

    piloting = list(design.pilot_seeds) if pilot else []
    run([x for c in design.comparisons for x in seed_cells(cfg, c, piloting)], "primary: pilot")
    pilots = {c.id: differences(cfg, c, piloting) for c in design.comparisons}
    bounds = {
        claim: spending_bounds(np.array(design.looks) / design.cap, ALPHA / len(design.family(claim)))
        for claim in {c.claim for c in design.comparisons}
    }
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
    rows, trial_rows = verdict_rows(design, pilots, pd.DataFrame(looks)), []
    for t in design.targeted:
        seeds = piloting + design.targeted_seeds(t)
        run([targets(cfg, s, t.per_seed) for s in seeds], f"primary {t.id}: targets")
        run(
            [
                x
                for s in seeds
                for target in targets(cfg, s, t.per_seed).value()["targets"]
                for x in trial_cells(cfg, t, s, target).values()
            ],
            f"primary {t.id}: {len(seeds) * t.per_seed} trials",
        )
        piloted, decided = trials(cfg, t, piloting), trials(cfg, t, design.targeted_seeds(t))
        trial_rows += [r | {"stage": "pilot"} for r in piloted] + [r | {"stage": "decide"} for r in decided]
        rows.append(targeted_row(design, t, piloted, decided))
    return {
        "verdicts": pd.DataFrame(rows, columns=COLUMNS),
        "looks": pd.DataFrame(looks),
        "trials": pd.DataFrame(trial_rows),
        "pilot": pd.DataFrame([{"id": i, **{f"seed {s}": d for s, d in zip(piloting, v)}} for i, v in pilots.items()]),
        "design": design,
    } | work


def targeted_row(design: Design, t: Targeted, piloted: list[dict], decided: list[dict]) -> dict:
    """The verdict row of a targeted comparison: its pilot trials size it, its deciding trials decide it."""
    alpha = ALPHA / len(design.family(t.claim))
    diffs = np.array([w - b for w, b in pairs(piloted)], dtype=float)
    needed = math.nan
    if len(diffs):
        needed = trials_for_power(float(np.mean(diffs != 0)), t.delta, alpha, DESIGN_POWER)
        needed = needed if needed is not None else math.inf
    r = paired_rates(pairs(decided), t.delta, alpha)
    return {
        "id": t.id,
        "claim": t.claim,
        "comparison": t.text,
        "unit": "trial",
        "δ": t.delta,
        "pilot sd": 100 * float(np.std(diffs, ddof=1)) if len(diffs) > 1 else math.nan,
        "seeds for power": needed,
        "looks": 1,
        "seeds": r["n"],
        "effect": r["mean"],
        "low": r["low"],
        "high": r["high"],
        "size": r["size"],
        "verdict": r["verdict"],
    }


def verdict_rows(design: Design, pilot: dict, looks: pd.DataFrame) -> list[dict]:
    rows = []
    for c in design.comparisons:
        last = looks[looks.id == c.id].iloc[-1]
        sd, needed = math.nan, math.nan
        if len(pilot[c.id]) > 1:
            sd = float(np.std(pilot[c.id], ddof=1))
            needed = seeds_for_power(sd, c.delta, ALPHA / len(design.family(c.claim)), DESIGN_POWER)
            needed = needed if needed is not None else math.inf
        rows.append(
            {
                "id": c.id,
                "claim": c.claim,
                "comparison": c.text,
                "unit": "seed",
                "δ": c.delta,
                "pilot sd": sd,
                "seeds for power": needed,
                "looks": int(last.look),
                "seeds": int(last.n),
                "effect": last["mean"],
                "low": last.low,
                "high": last.high,
                "size": last["size"],
                "verdict": last.verdict,
            }
        )
    return rows


def records(verdicts: pd.DataFrame) -> list[dict]:
    """The verdict table as JSON-ready records (the index's scoreboard and ``make replicate`` read these)."""
    return [
        {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v.item() if hasattr(v, "item") else v)
            for k, v in row.items()
        }
        for row in verdicts.to_dict("records")
    ]


# -- what the notebook shows --


def design_table(cfg: Preset) -> pd.DataFrame:
    """The declared design: per comparison its claim, regime, sides, δ and why it was chosen."""
    d = cfg.design
    if d is None:
        return pd.DataFrame(columns=["id", "claim", "comparison", "δ (points)", "why"])
    return pd.DataFrame(
        [
            {
                "id": c.id,
                "claim": f"{c.claim} {CLAIMS[c.claim]}",
                "comparison": c.text,
                "δ (points)": c.delta,
                "why": c.why,
            }
            for c in d.comparisons + d.targeted
        ]
    )


def targeted_table(result: dict) -> pd.DataFrame:
    """Per targeted comparison and stage (pilot, decide): trials, and per victim (FP without poisons, worse and
    better with them) the success rate k/n with its Wilson 95% interval and the mean test accuracy."""
    t = result["trials"]
    if t.empty:
        return pd.DataFrame()
    names = {c.id: c for c in result["design"].targeted}
    side = lambda c, k: "FP" if getattr(c, k)[0] == "fp" else f"QAT {getattr(c, k)[1].name}"
    rows = []
    for (i, stage), g in t.groupby(["id", "stage"], sort=False):
        row = {"id": i, "stage": stage, "trials": len(g)}
        for key, label in (
            ("clean", "FP, no poisons"),
            ("worse", side(names[i], "worse")),
            ("better", side(names[i], "better")),
        ):
            r = rate(int(g[f"{key} success"].sum()), len(g))
            row[f"{label}: success"] = (
                f"{r['k']}/{r['n']} = {100 * r['rate']:.0f}% [{100 * r['low']:.0f}, {100 * r['high']:.0f}]"
            )
            row[f"{label}: test acc (%)"] = round(100 * g[f"{key} acc"].mean(), 2)
        rows.append(row)
    return pd.DataFrame(rows).set_index(["id", "stage"])


def show_verdicts(verdicts: pd.DataFrame) -> None:
    """Display the verdict table, its records attached for the index's scoreboard."""
    scoreboard.show_verdicts(verdicts, records(verdicts))


def figure(result: dict):
    """Per comparison: the effect with its last repeated confidence interval and the ±δ band (points)."""
    v = result["verdicts"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(v), 1) + 1.2))
    colours = {"holds": "#2e7d32", "fails": "#c62828", "negligible": "#1565c0", "undecided": "#9e9e9e"}
    for y, (_, r) in enumerate(v.iterrows()):
        ax.fill_betweenx([y - 0.35, y + 0.35], -r["δ"], r["δ"], color="#e3f2fd", lw=0)
        ax.errorbar(
            r.effect, y, xerr=[[r.effect - r.low], [r.high - r.effect]], fmt="o", color=colours[r.verdict], capsize=3
        )
        ax.text(
            1.01, y, f"{r.verdict} ({r.seeds} {r.unit}s)", transform=ax.get_yaxis_transform(), va="center", fontsize=8
        )
    ax.axvline(0, c="grey", lw=0.8)
    ax.set_yticks(range(len(v)), [f"{r.id}: claim {r.claim}" for _, r in v.iterrows()])
    ax.invert_yaxis()
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel(
        "difference in the claim's direction (points, symlog): better's drop − worse's, or worse's success rate − "
        "better's; band: ±δ; bar: 95% interval (repeated, or Newcombe's)"
    )
    fig.tight_layout()
    return fig


def headline(cfg: Preset, result: dict) -> str:
    v = result["verdicts"]
    if v.empty:
        return f"**Verdicts:** preset {cfg.preset} declares no primary comparisons."
    counts = ", ".join(f"{(v.verdict == k).sum()} {k}" for k in PRIMARY_VERDICTS)
    per_claim = "; ".join(
        f"claim {claim}: " + ", ".join(f"{r.id} {r.verdict}" for _, r in g.iterrows())
        for claim, g in v.groupby("claim")
    )
    d = result["design"]
    targeted = "".join(
        f" {t.id} on {t.trials} fresh trials ({t.seeds} seeds × {t.per_seed} targets) by the exact McNemar test."
        for t in d.targeted
    )
    return (
        f"**Verdicts of the {len(v)} primary comparisons ({cfg.dataset}):** {counts}. {per_claim}. Each seed-wise "
        f"comparison decided on fresh seeds from {d.first_seed} in groups of {d.group} (cap {d.cap});{targeted} "
        f"The pilot seeds {list(d.pilot_seeds)} only sized the design."
    )
