"""Notebook 06: where the attacks bite. The FP drop of each indiscriminate attack per regime (model, constraint
mode, budget), then the paper's claims in the regimes where FP drops are decided, on fresh seeds.

Regimes: the GC paper's models ``lr`` (784→10), ``mlp`` (784-128-10) and ``cnn_plim`` (the PyTorch MNIST example,
dropout, no BatchNorm), whole networks quantized (``keep_fp`` []), beside the preset's ``cnn`` (BatchNorm, first and
last layer in FP); ``MODELS`` gives each one's width and ``keep_fp``. Constraint modes (``qlib.attacks.constraints``):
``bounds`` "image" (poisons are images, [0, 1]) and "none" (the official code's unclipped pixels: *invalid images*,
labelled so everywhere). Budgets and modes per model: ``BUDGETS`` and ``MODES`` (ε_d = 1 adds N poisons).

Cells, part (a), FP drops (``qlib.experiments.attack_grid``): ``ATTACKS`` on ``SMALL`` models at each of their budgets
(TGDA up to ``TGDA_MAX_EPS_D``) and modes over ``experiments.strength.seeds``; ``LARGE_ATTACKS`` on ``LARGE`` models
over ``cfg.seeds`` (their retraining and GC cost 10-30× more: 10 seeds there are not affordable on 2 cores); what is
left out keeps ``make reproduce`` within an hour on 2 cores (``BUDGETS``, ``MODES``); and on ``cnn`` GC cancelling the
training-mode gradient (``batchnorm`` "batch", ``BATCHNORM_KNOB``). Part (b), claims: :func:`regimes` chooses, on
``experiments.strength.choice_seeds`` only, per small model and mode the smallest budget ≤ ``CLAIM_MAX_EPS_D`` whose GC
FP drop has a 95% interval below zero; there, on the fresh ``claim_seeds``, ``CLAIM_ATTACKS`` (label flip, GC, and GC-Q
per QAT scheme) in FP, PTQ at 1, 4, 8 bits and QAT at 1, 4, 8 bits (W; and WA for ``mlp``, whose WA schemes quantize its
hidden activation; ``lr`` has none, so weight-only schemes only). Claims (the paper's 1-4), paired by seed with
Benjamini-Hochberg within each family (``qlib.stats``): quantization more robust than FP, lower bits more robust, WA
more robust than W, QAA stronger than QOA. Beside ours: the GC paper's MNIST table as far as found
(``GC_PAPER_MNIST``, unverified: not read in the paper itself).
"""

from dataclasses import replace

import pandas as pd
import seaborn as sns

from ..paper import FP, W_SCHEMES, WA_SCHEMES
from ..poison import BOUNDS
from ..presets import Preset, merge_attacks
from ..settings import with_settings
from ..stats import Comparison, paired, summarise, tally
from ..stats import claims as test_claims
from . import Stage, attack_grid, ensure, grid_cells

MODELS = {
    "lr": {"width": 1.0, "keep_fp": []},
    "mlp": {"width": 1.0, "keep_fp": []},
    "cnn_plim": {"width": 0.5, "keep_fp": []},
    "cnn": {},
}  # cnn: the preset's width and keep_fp
SMALL, LARGE = ("lr", "mlp"), ("cnn_plim", "cnn")
# Part (a)'s budgets and modes per model (label flip, which moves no pixel, runs in the first mode). Left out for
# time (worker-minutes of the timed `make reproduce` at 8b94237, 2 cores): ε_d = 1 on ``mlp`` (GC's 6,000 poisons in
# 12 chunks, ~5 over both modes and 10 seeds) and ``cnn_plim`` with valid images (~3; its GC interval over 3 seeds
# was 5.6 points wide).
BUDGETS = {"lr": [0.03, 0.1, 1.0], "mlp": [0.03, 0.1], "cnn_plim": [0.03], "cnn": [0.03]}
MODES = {"lr": BOUNDS, "mlp": BOUNDS, "cnn_plim": ("none",), "cnn": BOUNDS}
ATTACKS = ["label_flip", "tgda", "gc"]
TGDA_MAX_EPS_D = 0.1  # at ε_d = 1 each of TGDA's Hessian products runs over 6,000 poisons: minutes per mlp cell
LARGE_ATTACKS = ["label_flip", "gc"]
BATCHNORM_KNOB = ("cnn", "gc", 0.03)  # GC cancelling batch statistics' gradient on the BatchNorm network
MOVES_PIXELS = ("gc", "tgda", "gc_q", "tgda_q")  # the attacks with a constraint mode
CLAIM_MAX_EPS_D = 0.1
CLAIM_ATTACKS = ["label_flip", "gc"]
QAA = {"gc_q": "gc"}
INVALID = "none (invalid images)"
# The GC paper's MNIST results (Lu, Kamath, Yu 2023, Table 2 per watml/plim's README): GC's accuracy drop (points)
# by (model, ε_d). NOT found in a primary source (no corpus here holds the paper's text); these numbers are read
# from an unattributed image in a third-party fork (github.com/coates4/plim, model.png, commit 090053a), which may
# mix the paper's and the fork's runs: UNVERIFIED, shown only as such. Their LR, NN, CNN are our lr, mlp, cnn_plim.
GC_PAPER_MNIST_SOURCE = "unverified: third-party image coates4/plim model.png (not the paper's PDF)"
GC_PAPER_MNIST = {
    ("lr", 0.03): -21.1,
    ("lr", 0.1): -57.01,
    ("lr", 1.0): -67.2,
    ("mlp", 0.03): -5.3,
    ("mlp", 0.1): -10.0,
    ("mlp", 1.0): -12.5,
    ("cnn_plim", 0.03): -12.8,
    ("cnn_plim", 0.1): -20.5,
    ("cnn_plim", 1.0): -24.0,
}


def regime(cfg: Preset, model: str, bounds: str, seeds: list[int], batchnorm: str | None = None) -> Preset:
    """``cfg`` for one regime: the model with its settings (``MODELS``), the seeds, and the constraint mode of every
    attack that moves pixels. The default mode ("image") is left unset, so those cells are the other notebooks'."""
    modes = {} if bounds == "image" else {"bounds": bounds}
    overrides = {"gc": modes | ({"batchnorm": batchnorm} if batchnorm else {}), "tgda": modes}
    attacks = merge_attacks(cfg.attacks, {a: m for a, m in overrides.items() if m})
    return replace(cfg, model=model, seeds=list(seeds), attacks=attacks, **MODELS[model])


def _mode(bounds: str) -> str:
    return INVALID if bounds == "none" else bounds


def drop_grids(cfg: Preset) -> list[tuple[dict, list]]:
    """Part (a): (labels, attack-grid entries) per model, mode and knob."""
    out = []
    for model in SMALL + LARGE:
        small = model in SMALL
        seeds, attacks = (cfg.experiments.strength.seeds, ATTACKS) if small else (cfg.seeds, LARGE_ATTACKS)
        eps_ds = BUDGETS[model]
        for bounds in MODES[model]:
            chosen = attacks if bounds == MODES[model][0] else [a for a in attacks if a in MOVES_PIXELS]
            rcfg = regime(cfg, model, bounds, seeds)
            entries = [
                e
                for a in chosen
                for e in attack_grid.entries(
                    rcfg, [a], [d for d in eps_ds if a != "tgda" or d <= TGDA_MAX_EPS_D], [("fp", FP)]
                )
            ]
            out.append(({"model": model, "bounds": bounds, "batchnorm": "eval"}, entries))
    model, attack, eps_d = BATCHNORM_KNOB
    out.append(
        (
            {"model": model, "bounds": "image", "batchnorm": "batch"},
            attack_grid.entries(regime(cfg, model, "image", cfg.seeds, "batch"), [attack], [eps_d], [("fp", FP)]),
        )
    )
    return out


def _rows(labelled: list[tuple[dict, list]]) -> pd.DataFrame:
    frames = [attack_grid.rows(entries).assign(**labels) for labels, entries in labelled if entries]
    df = pd.concat(frames, ignore_index=True)
    moves = df.attack.isin(MOVES_PIXELS)
    return df.assign(bounds=df.bounds.where(moves, "n/a"), batchnorm=df.batchnorm.where(moves, "n/a"))


def drops(cfg: Preset, progress: bool = True) -> pd.DataFrame:
    """Part (a)'s runs: one tidy row per model, mode, attack, ε_d and seed (label flip: ``bounds`` "n/a")."""
    grids = drop_grids(cfg)
    ensure([c for _, entries in grids for c in grid_cells(entries)], progress)
    return _rows(grids)


def drop_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per regime and attack: the mean FP drop with its paired 95% interval (poisoned − clean, same seed), the MDE,
    the seeds, and whether the drop is decided (the interval excludes zero)."""
    rows = []
    keys = ["model", "bounds", "batchnorm", "attack", "eps_d"]
    for key, group in runs.groupby(keys, sort=False):
        r = paired(group.sort_values("seed")["drop"].to_numpy())
        rows.append(
            {
                **dict(zip(keys, key)),
                "n": r["n"],
                "drop": 100 * r["mean"],
                "low": 100 * r["low"],
                "high": 100 * r["high"],
                "mde": 100 * r["mde"],
                "clean acc.": 100 * group.clean_acc.mean(),
                "decided": bool(r["high"] < 0 or r["low"] > 0),
            }
        )
    out = pd.DataFrame(rows)
    return out.assign(bounds=out.bounds.map(lambda b: _mode(b) if b != "n/a" else b))


def regimes(cfg: Preset, runs: pd.DataFrame) -> list[dict]:
    """Part (b)'s regimes, chosen on ``experiments.strength.choice_seeds`` only: per small model and mode, the
    smallest ε_d ≤ ``CLAIM_MAX_EPS_D`` whose GC FP drop has a 95% interval below zero (none if no budget qualifies)."""
    chosen = []
    pick = runs[
        runs.seed.isin(cfg.experiments.strength.choice_seeds) & (runs.attack == "gc") & (runs.batchnorm == "eval")
    ]
    for model in SMALL:
        for bounds in MODES[model]:
            for eps_d in sorted(e for e in BUDGETS[model] if e <= CLAIM_MAX_EPS_D):
                group = pick[(pick.model == model) & (pick.bounds == bounds) & (pick.eps_d == eps_d)]
                if len(group) >= 2 and paired(group.sort_values("seed")["drop"].to_numpy())["high"] < 0:
                    chosen.append({"model": model, "bounds": bounds, "eps_d": eps_d})
                    break
    return chosen


def candidate_regimes() -> list[dict]:
    """Every regime :func:`regimes` could choose, at its largest budget: an upper bound of part (b)'s work."""
    return [{"model": m, "bounds": b, "eps_d": CLAIM_MAX_EPS_D} for m in SMALL for b in MODES[m]]


def choice_grids(cfg: Preset) -> list[tuple[dict, list]]:
    """GC's FP drops on the choice seeds, per small model and constraint mode: what :func:`regimes` chooses from."""
    choice = with_settings(cfg, "strength", seeds=cfg.experiments.strength.choice_seeds)
    return [
        (labels, [e for e in entries if e[0]["attack"] == "gc"])
        for labels, entries in drop_grids(choice)
        if labels["model"] in SMALL and labels["batchnorm"] == "eval"
    ]


def chosen_regimes(cfg: Preset) -> list[dict]:
    """:func:`regimes` from GC's FP drops on the choice seeds (their cells must be computed)."""
    return regimes(cfg, _rows(choice_grids(cfg)))


def claim_grids(cfg: Preset, chosen: list[dict]) -> list[tuple[dict, list]]:
    """Part (b): per chosen regime, on ``experiments.strength.claim_seeds``: QOA in FP, PTQ and QAT; QAA per QAT
    scheme."""
    out = []
    for r in chosen:
        rcfg = regime(cfg, r["model"], r["bounds"], cfg.experiments.strength.claim_seeds)
        qat = W_SCHEMES + (WA_SCHEMES if r["model"] != "lr" else [])
        settings = [("fp", FP)] + [("ptq", s) for s in W_SCHEMES] + [("qat", s) for s in qat]
        labels = {"model": r["model"], "bounds": r["bounds"], "batchnorm": "eval", "regime_bounds": r["bounds"]}
        out.append(
            (
                labels,
                attack_grid.entries(rcfg, CLAIM_ATTACKS, [r["eps_d"]], settings)
                + attack_grid.entries(rcfg, list(QAA), [r["eps_d"]], [("qat", s) for s in qat]),
            )
        )
    return out


def cells(cfg: Preset, chosen: list[dict]) -> list:
    """Every cell of part (a) and of part (b) in the ``chosen`` regimes."""
    return [c for _, entries in drop_grids(cfg) + claim_grids(cfg, chosen) for c in grid_cells(entries)]


def stages(cfg: Preset) -> list:
    """The regimes are chosen first, from GC's FP drops on the choice seeds; parts (a) and (b) follow the choice
    (planned: every regime it could choose)."""
    return [
        Stage("regime choice", lambda: [c for _, entries in choice_grids(cfg) for c in grid_cells(entries)]),
        Stage(
            "where the attacks bite",
            lambda: cells(cfg, chosen_regimes(cfg)),
            plan=lambda: cells(cfg, candidate_regimes()),
        ),
    ]


def run(cfg: Preset, progress: bool = True) -> dict:
    """Part (a)'s drops, the chosen regimes and part (b)'s runs (``setting``: "FP", "PTQ 4W", "QAT 4W4A", …)."""
    runs = drops(cfg, progress)
    chosen = regimes(cfg, runs)
    grids = claim_grids(cfg, chosen)
    ensure([c for _, entries in grids for c in grid_cells(entries)], progress)
    claim_runs = (
        _rows(grids)
        if grids
        else pd.DataFrame(
            columns=["model", "bounds", "regime_bounds", "regime", "scheme", "attack", "eps_d", "seed", "drop"]
        )
    )
    claim_runs = claim_runs.assign(
        setting=[
            ("FP" if reg == "fp" else f"{reg.upper()} {s}") for reg, s in zip(claim_runs.regime, claim_runs.scheme)
        ]
    )
    return {"drops": runs, "regimes": pd.DataFrame(chosen, columns=["model", "bounds", "eps_d"]), "claims": claim_runs}


def claims(claim_runs: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims 1-4 in each chosen regime, paired by seed (``qlib.stats.claims``), with the families the
    other notebooks use, so that ``bench/claim_counts.py`` counts them beside theirs. Label flip moves no pixel, so
    its claims are tested in a model's ``bounds`` image regime only (in the other they would repeat its cells)."""
    if claim_runs.empty:
        return pd.DataFrame(columns=["regime", "family", "claim", "our run"])
    frames = []
    for (model, bounds, eps_d), runs in claim_runs.groupby(["model", "regime_bounds", "eps_d"], sort=False):
        s = summarise(runs, ["setting", "attack"]).set_index(["setting", "attack"])
        have = set(s.index)
        comps = []
        for a in [a for a in CLAIM_ATTACKS if bounds == "image" or a in MOVES_PIXELS]:  # label flip: counted once
            for regime_ in ("PTQ", "QAT"):
                family = f"{regime_} more robust than FP"
                comps += [
                    Comparison(
                        family, f"{a}: {regime_} {q.name} more robust than FP", (f"{regime_} {q.name}", a), ("FP", a)
                    )
                    for q in (W_SCHEMES if regime_ == "PTQ" else W_SCHEMES + WA_SCHEMES)
                    if (f"{regime_} {q.name}", a) in have
                ]
                ladder = W_SCHEMES
                pairs = [(ladder[0], ladder[1]), (ladder[1], ladder[2])]
                if regime_ == "QAT":
                    pairs += [(WA_SCHEMES[0], WA_SCHEMES[1]), (WA_SCHEMES[1], WA_SCHEMES[2])]
                comps += [
                    Comparison(
                        "lower bits more robust",
                        f"{a}: {regime_} {lo.name} more robust than {hi.name}",
                        (f"{regime_} {lo.name}", a),
                        (f"{regime_} {hi.name}", a),
                    )
                    for lo, hi in pairs
                    if (f"{regime_} {lo.name}", a) in have and (f"{regime_} {hi.name}", a) in have
                ]
            comps += [
                Comparison(
                    "WA more robust than W",
                    f"{a}: QAT {wa.name} more robust than {w.name}",
                    (f"QAT {wa.name}", a),
                    (f"QAT {w.name}", a),
                )
                for wa, w in zip(WA_SCHEMES, W_SCHEMES)
                if (f"QAT {wa.name}", a) in have
            ]
        comps += [
            Comparison(
                "QAA stronger than QOA",
                f"QAT {q.name}: {aware} stronger than {oblivious}",
                (f"QAT {q.name}", oblivious),
                (f"QAT {q.name}", aware),
            )
            for aware, oblivious in QAA.items()
            for q in W_SCHEMES + WA_SCHEMES
            if (f"QAT {q.name}", aware) in have
        ]
        label = f"{model}, bounds {_mode(bounds)}, ε_d = {eps_d:g}"
        frames.append(test_claims(s, comps).assign(regime=label))
    out = pd.concat(frames, ignore_index=True)
    return out[["regime"] + [c for c in out.columns if c != "regime"]]


# -- what the notebook shows --


def figure(runs: pd.DataFrame) -> sns.FacetGrid:
    """Part (a): the FP drop against ε_d per model (panels) and attack (colours), solid for images, dashed for
    bounds none (invalid images); mean and 95% interval over seeds."""
    df = runs[runs.batchnorm != "batch"].assign(
        drop=100 * runs["drop"], pixels=runs.bounds.map(lambda b: INVALID if b == "none" else "images")
    )
    grid = sns.relplot(
        data=df,
        x="eps_d",
        y="drop",
        hue="attack",
        style="pixels",
        col="model",
        col_order=list(MODELS),
        kind="line",
        marker="o",
        errorbar=("ci", 95),
        height=2.8,
        aspect=0.9,
        facet_kws={"sharey": False},
    )
    grid.set(xscale="log", xlabel="ε_d (log scale)", ylabel="FP accuracy drop (points)")
    for ax in grid.axes.flat:
        ax.axhline(0, c="grey", lw=0.8)
    return grid


def largest(table: pd.DataFrame, valid: bool) -> pd.Series | None:
    """The largest decided FP drop of an attack that optimises pixels, with valid images (``bounds`` image) or with
    invalid ones (bounds none)."""
    pick = table[
        table.decided
        & (table["drop"] < 0)
        & table.attack.isin(MOVES_PIXELS)
        & ((table.bounds != INVALID) if valid else (table.bounds == INVALID))
    ]
    return None if pick.empty else pick.sort_values("drop").iloc[0]


def knobs(table: pd.DataFrame) -> pd.DataFrame:
    """Which knob moves GC's FP drop at ε_d = 0.03 (points): bounds (columns), model and the BatchNorm mode GC cancels
    (rows; cnn has BatchNorm)."""
    gc = table[(table.attack == "gc") & (table.eps_d == 0.03)]
    return gc.pivot_table(index=["model", "batchnorm"], columns="bounds", values="drop", sort=False).map(
        lambda v: "" if pd.isna(v) else f"{v:+.2f}"
    )


def gc_paper_table(table: pd.DataFrame) -> pd.DataFrame:
    """GC's FP drop (points) per GC-paper model and ε_d: ours with valid images and with invalid ones (bounds none,
    the official code's) beside the GC paper's MNIST numbers as far as found (``GC_PAPER_MNIST``: unverified)."""
    gc = table[(table.attack == "gc") & (table.batchnorm == "eval")]
    rows = []
    for (model, eps_d), paper_drop in GC_PAPER_MNIST.items():
        ours = {b: gc[(gc.model == model) & (gc.eps_d == eps_d) & (gc.bounds == _mode(b))] for b in BOUNDS}
        shown = lambda df: (
            "" if df.empty else f"{df['drop'].iloc[0]:+.2f} [{df.low.iloc[0]:+.2f}, {df.high.iloc[0]:+.2f}]"
        )
        rows.append(
            {
                "model": model,
                "ε_d": eps_d,
                "ours, images": shown(ours["image"]),
                f"ours, {INVALID}": shown(ours["none"]),
                "GC paper, MNIST (unverified)": f"{paper_drop:+.2f}",
            }
        )
    return pd.DataFrame(rows).set_index(["model", "ε_d"])


def headline(cfg: Preset, runs: dict) -> str:
    """What this shows: the largest decided FP drop with valid images and with invalid ones, how many regimes were
    chosen, and the claims' tallies per family."""
    table, strength = drop_table(runs["drops"]), cfg.experiments.strength
    valid, invalid = largest(table, True), largest(table, False)
    say = lambda r: (
        f"{r['attack']} on {r['model']} at ε_d = {r['eps_d']:g}: {r['drop']:+.2f} points "
        f"[{r['low']:+.2f}, {r['high']:+.2f}], {int(r['n'])} seeds"
    )
    tested = claims(runs["claims"])
    families = [
        "PTQ more robust than FP",
        "QAT more robust than FP",
        "lower bits more robust",
        "WA more robust than W",
        "QAA stronger than QOA",
    ]
    return (
        f"**Attack strength on {cfg.dataset}:** with valid images the largest decided FP drop of an indiscriminate "
        f"attack that optimises pixels is "
        + (say(valid) if valid is not None else "none (no interval excludes zero)")
        + "; with bounds none (invalid images) it is "
        + (say(invalid) if invalid is not None else "none")
        + ". "
        f"{len(runs['regimes'])} regime(s) qualified on seeds {strength.choice_seeds} for the claims, tested on "
        f"seeds {strength.claim_seeds}: "
        + (
            "; ".join(f"{f}: {tally(tested[tested.family == f])}" for f in families if (tested.family == f).any())
            if len(tested)
            else "no claims tested"
        )
        + "."
    )
