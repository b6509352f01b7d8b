"""Notebook 01: post-training quantization against indiscriminate attacks (Tables 1 and 2) and the ε_d sweep.

Cells: Table 1, the attack grid (``attack_grid``) of ``QOA`` at ε_d = ``cfg.eps_d`` in ``SETTINGS`` (FP, PTQ at 1, 4,
8 bits); Table 2, per seed the GradPC target read in FP and after PAQ at 8, 4, 1 bits (``qlib.cells.paq_reading``);
the sweep, the attack grid of ``sweep_attacks`` at each of ``sweep_eps_d`` (notebook parameters; defaults
``SWEEP_EPS_D``, ``SWEEP_ATTACKS``). One FP retrain on μ + ν serves every bit-width.
Attacks: label flip, TGDA, GC. The paper's numbers: ``paper.TABLE1`` (drops), ``paper.TABLE2`` (drop, ε_w).
Claims (Section 2.1), per attack: PTQ at each bit-width more robust than FP; lower bits more robust. Constant:
``PRECISIONS`` (their order in the figures and the sweep table). The notebook shows Table 1 (table and figure), its
claims, Table 2, the sweep (figure and table) and a headline.
"""

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .. import paper
from ..cells import paq_reading
from ..paper import FP, W_SCHEMES
from ..presets import Preset
from ..quant import QuantScheme
from ..stats import ALPHA, Comparison, mean_std, paired, percent, points, summarise, tally
from ..stats import claims as test_claims
from . import attack_grid, ensure, grid_cells, grid_rows

QOA = ["label_flip", "tgda", "gc"]  # the quantization-oblivious attacks of Tables 1 and 3
SETTINGS = [("fp", FP)] + [("ptq", s) for s in W_SCHEMES]
SWEEP_EPS_D = [0.01, 0.03, 0.1]
SWEEP_ATTACKS = ["label_flip", "gc"]
PRECISIONS = ["1-bit", "4-bit", "8-bit", "FP"]  # the order of the precisions in the figures and the sweep table


OWN = ("sweep_eps_d", "sweep_attacks")  # notebook 01's own parameters (qlib.params.OWN checks them)


def precision(scheme: QuantScheme) -> str:
    """``FP``, ``1-bit``, ``4-bit`` or ``8-bit``: the row label of Tables 1 and 2."""
    return "FP" if scheme.is_fp else f"{scheme.w_bits}-bit"


def grids(cfg: Preset, sweep_eps_d: list[float] = SWEEP_EPS_D, sweep_attacks: list[str] = SWEEP_ATTACKS) -> dict:
    return {
        "table1": attack_grid.entries(cfg, QOA, [cfg.eps_d], SETTINGS),
        "table2": [
            ({"seed": seed, "precision": precision(s)}, {"reading": paq_reading(cfg, seed, s)})
            for seed in cfg.seeds
            for s in [FP, *reversed(W_SCHEMES)]
        ],
        "sweep": attack_grid.entries(cfg, sweep_attacks, sweep_eps_d, SETTINGS),
    }


def cells(cfg: Preset, sweep_eps_d: list[float] = SWEEP_EPS_D, sweep_attacks: list[str] = SWEEP_ATTACKS) -> list:
    return [c for entries in grids(cfg, sweep_eps_d, sweep_attacks).values() for c in grid_cells(entries)]


def run(
    cfg: Preset, sweep_eps_d: list[float] = SWEEP_EPS_D, sweep_attacks: list[str] = SWEEP_ATTACKS, progress: bool = True
) -> dict[str, pd.DataFrame]:
    """The runs of Table 1, Table 2 and the sweep, by name (tidy rows; drops are poisoned − clean)."""
    g = grids(cfg, sweep_eps_d, sweep_attacks)
    ensure([c for entries in g.values() for c in grid_cells(entries)], progress)
    with_precision = lambda df: df.assign(precision=df.scheme.map({s.name: precision(s) for s in [FP, *W_SCHEMES]}))
    table2 = grid_rows(
        g["table2"],
        lambda labels, v: {
            **labels,
            **v["reading"],
            "drop": v["reading"]["acc"] - v["reading"]["clean_acc"],
            "drop_vs_ptq": v["reading"]["acc"] - v["reading"]["same_precision_acc"],
        },
    )
    return {
        "table1": with_precision(attack_grid.rows(g["table1"])),
        "table2": table2,
        "sweep": with_precision(attack_grid.rows(g["sweep"])),
    }


def summary(table1: pd.DataFrame) -> pd.DataFrame:
    """One row per precision and attack: clean accuracy, our drop (mean, std, per seed) and the paper's."""
    return summarise(table1, ["precision", "attack"], paper=paper.TABLE1, means=("clean_acc",))


def claims(summary: pd.DataFrame) -> pd.DataFrame:
    """Section 2.1's claims, per attack: PTQ is more robust than FP, and lower bits are more robust (``stats.claims``:
    paired by seed, decided within each family)."""
    comparisons = []
    for attack in summary.attack.unique():
        comparisons += [
            Comparison(
                "PTQ more robust than FP", f"{attack}: PTQ {bits} more robust than FP", (bits, attack), ("FP", attack)
            )
            for bits in ("8-bit", "4-bit", "1-bit")
        ]
        comparisons += [
            Comparison(
                "lower bits more robust", f"{attack}: PTQ {low} more robust than {high}", (low, attack), (high, attack)
            )
            for low, high in (("1-bit", "4-bit"), ("4-bit", "8-bit"))
        ]
    return test_claims(summary.set_index(["precision", "attack"]), comparisons, paper.TABLE1)


def table2_summary(table2: pd.DataFrame) -> pd.DataFrame:
    """Table 2: per precision, the GradPC target's drop and ε_w (mean ± std over seeds) beside the paper's."""
    out = mean_std(table2, "drop", ["precision"]).rename(columns={"mean": "drop", "std": "drop_std"})
    eps = mean_std(table2, "eps_w", ["precision"]).set_index("precision")[["mean", "std"]]
    out = out.join(eps.rename(columns={"mean": "eps_w", "std": "eps_w_std"}), on="precision")
    out = out.join(table2.groupby("precision")["drop_vs_ptq"].mean(), on="precision")
    return out.assign(
        paper_drop=[paper.TABLE2[p][0] for p in out.precision], paper_eps_w=[paper.TABLE2[p][1] for p in out.precision]
    )


# -- what the notebook shows --


def table1(runs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Table 1: per precision and attack, clean accuracy, our drop (mean ± std, per seed) and the paper's."""
    s = summary(runs["table1"])
    seed_cols = [c for c in s.columns if c.startswith("seed ")]
    return pd.DataFrame(
        {
            "clean acc.": s.clean_acc.map(percent),
            "ours: drop (mean ± std, points)": [
                f"{100 * m:+.2f} ± {100 * sd:.2f}" for m, sd in zip(s["mean"], s["std"])
            ],
            **{c: s[c].map(points) for c in seed_cols},
            "paper's drop (CIFAR-10)": s.paper.map(points),
        }
    ).set_index([s.precision, s.attack])


def figure1(runs: dict[str, pd.DataFrame]) -> plt.Axes:
    """Table 1 as a figure: the drop per precision, one colour per attack (mean ± std over seeds)."""
    t1 = runs["table1"]
    ax = sns.pointplot(
        data=t1.assign(drop=100 * t1["drop"]),
        x="precision",
        y="drop",
        hue="attack",
        order=PRECISIONS,
        errorbar="sd",
        dodge=0.3,
        capsize=0.1,
    )
    ax.axhline(0, c="grey", lw=0.8)
    ax.set(
        ylabel="accuracy drop (points, mean ± std over seeds)",
        xlabel="precision (PTQ of the FP model; FP = none)",
        title=f"Table 1 at ε_d = {t1.eps_d.iloc[0]}",
    )
    return ax


def table2(runs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Table 2: per precision, the GradPC target's drop (against clean FP and against the same precision) and ε_w,
    beside the paper's."""
    t2 = table2_summary(runs["table2"])
    return pd.DataFrame(
        {
            "ours: drop (points)": [f"{100 * m:+.2f} ± {100 * s:.2f}" for m, s in zip(t2["drop"], t2.drop_std)],
            "ours: drop vs same-precision clean": t2.drop_vs_ptq.map(points),
            "ours: ε_w": [f"{m:.4g} ± {s:.2g}" for m, s in zip(t2.eps_w, t2.eps_w_std)],
            "paper's drop (ε_w 0.5)": t2.paper_drop.map(points),
            "paper's ε_w": t2.paper_eps_w,
        }
    ).set_index(t2.precision)


def sweep_figure(runs: dict[str, pd.DataFrame]) -> sns.FacetGrid:
    """The sweep: the drop against ε_d (log scale), one panel per precision, one colour per attack."""
    sweep = runs["sweep"]
    grid = sns.relplot(
        data=sweep.assign(drop=100 * sweep["drop"]),
        x="eps_d",
        y="drop",
        hue="attack",
        col="precision",
        col_order=PRECISIONS,
        kind="line",
        marker="o",
        errorbar="sd",
        height=2.8,
        aspect=0.9,
    )
    grid.set(xscale="log", xlabel="ε_d (log scale)", ylabel="accuracy drop (points)")
    for ax in grid.axes.flat:
        ax.axhline(0, c="grey", lw=0.8)
    return grid


def sweep_table(runs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The sweep: the mean drop (points) per attack and ε_d, one column per precision."""
    return (
        summarise(runs["sweep"], ["attack", "eps_d", "precision"])
        .pivot_table(index=["attack", "eps_d"], columns="precision", values="mean", sort=False)[PRECISIONS]
        .map(points)
    )


def headline(cfg: Preset, runs: dict[str, pd.DataFrame]) -> str:
    """What this shows: Table 1's FP drops beside the paper's, the claims' verdicts, the sweep's largest budget and
    Table 2's GradPC target."""
    s = summary(runs["table1"])
    tested = claims(s)
    fp = s[s.precision == "FP"].set_index("attack")
    hurt = [a for a, r in fp.filter(like="seed ").iterrows() if paired(r)["p"] <= ALPHA and r.mean() < 0]
    sweep, t2 = runs["sweep"], table2_summary(runs["table2"]).set_index("precision")
    big = sweep.eps_d.max()
    big_fp = sweep[(sweep.eps_d == big) & (sweep.precision == "FP")].groupby("attack")["drop"].mean()
    return (
        f"**Table 1 on {cfg.dataset} ({cfg.model}, {len(cfg.seeds)} seed(s), ε_d = {cfg.eps_d}):** in FP the drops are "
        + ", ".join(f"{a} {points(fp.loc[a, 'mean'])} ± {100 * fp.loc[a, 'std']:.2f}" for a in fp.index)
        + " points (the paper: "
        + ", ".join(f"{a} {points(fp.loc[a, 'paper'])}" for a in fp.index)
        + "). "
        + f"A paired t-test (poisoned − clean per seed, α = {ALPHA}) finds an FP drop for "
        f"{', '.join(hurt) or 'no attack'}. "
        + f"Robustness claims, paired by seed: {tally(tested)}"
        + (" (one seed: no test)" if len(cfg.seeds) < 2 else "")
        + f"; {tested.agrees.sum()} of {tested.agrees.notna().sum()} verdicts agree with the paper's own table. "
        f"At the sweep's largest budget (ε_d = {big}) the FP drops are "
        + ", ".join(f"{a} {points(v)}" for a, v in big_fp.items())
        + " points. "
        f"The GradPC target (ε_w = {cfg.eps_w}) costs {points(t2.loc['FP', 'drop'])} points in FP "
        f"and {points(t2.loc['1-bit', 'drop'])} after 1-bit PAQ."
    )
