"""Notebook 02: quantization-aware training against the indiscriminate attacks (Table 3).

Cells: the attack grid (``attack_grid``) of ``ATTACKS`` at ε_d = ``cfg.eps_d`` in ``SETTINGS``: FP, and QAT under
every scheme of ``paper.QAT_SCHEMES``. QOA poisons are made once in FP and reused in every row; QAA poisons
(GC-Q, TGDA-Q) per scheme. Constants: ``ROWS`` and ``COLUMNS`` (Table 3's rows and attacks, in the paper's
order), ``QAA`` (each QAA's QOA), ``LOWER_BITS`` and ``WA_VS_W`` (the pairs Section 4.2 compares). The paper's
numbers: ``paper.TABLE3`` (drops), ``paper.TABLE3_EXTRA`` (the ↓ column). Claims (Section 4.2): QAT more robust than FP;
lower bits more robust; WA more robust than W; QAA stronger than QOA. The notebook shows Table 3 (table, per-seed drops,
the ↓ column, figure), its claims and a headline.
"""

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .. import paper
from ..paper import FP, QAT_SCHEMES
from ..presets import Preset
from ..stats import Comparison, fmt_pct, mean_std, percent, points, summarise, tally
from ..stats import claims as test_claims
from . import attack_grid, ensure, grid_cells
from .ptq import QOA

QAA = {"gc_q": "gc", "tgda_q": "tgda"}  # each quantization-aware attack and its oblivious counterpart
ATTACKS = QOA + list(QAA)
SETTINGS = [("fp", FP)] + [("qat", s) for s in QAT_SCHEMES]
ROWS = ["fp"] + [s.name for s in QAT_SCHEMES]
COLUMNS = QOA + ["tgda_q", "gc_q"]  # Table 3's attack columns, in the paper's order
LOWER_BITS = [
    ("1W bnn", "4W"),
    ("1W bnn++", "4W"),
    ("4W", "8W"),
    ("1W1A bnn", "4W4A"),
    ("1W1A bnn++", "4W4A"),
    ("4W4A", "8W8A"),
]
WA_VS_W = [("1W1A bnn", "1W bnn"), ("1W1A bnn++", "1W bnn++"), ("4W4A", "4W"), ("8W8A", "8W")]


def grid(cfg: Preset) -> list:
    return attack_grid.entries(cfg, ATTACKS, [cfg.eps_d], SETTINGS)


def cells(cfg: Preset) -> list:
    return grid_cells(grid(cfg))


def run(cfg: Preset, progress: bool = True) -> pd.DataFrame:
    """Table 3's runs: one tidy row per seed, attack and setting (``task``: the scheme without its method)."""
    entries = grid(cfg)
    ensure(grid_cells(entries), progress)
    df = attack_grid.rows(entries)
    return df.assign(task=[name.split()[0] for name in df.scheme])


def _paper_key(key: tuple) -> tuple:
    scheme, attack = key
    task, method = (
        ("fp", "fp") if scheme == "fp" else (scheme.split()[0], scheme.split()[1] if " " in scheme else "int")
    )
    return task, method, attack


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per scheme and attack: clean accuracy, our drop (mean, std, per seed) and the paper's."""
    return summarise(
        runs,
        ["scheme", "attack"],
        paper=paper.TABLE3,
        first=("task", "method"),
        means=("clean_acc",),
        paper_key=lambda row: _paper_key((row.scheme, row.attack)),
    )


def extra_drop(summary: pd.DataFrame) -> pd.DataFrame:
    """The paper's ↓ column: how much further each QAA lowers accuracy than its QOA, per scheme (negative = the QAA
    is stronger), ours (difference of the seed means) and the paper's as printed."""
    by = summary.set_index(["scheme", "attack"])
    return pd.DataFrame(
        [
            {
                "scheme": scheme,
                "attack": aware,
                "ours": by.loc[(scheme, aware), "mean"] - by.loc[(scheme, oblivious), "mean"],
                "paper": paper.TABLE3_EXTRA.get(_paper_key((scheme, aware))),
            }
            for scheme in ROWS[1:]
            for aware, oblivious in QAA.items()
            if (scheme, aware) in by.index
        ]
    )


def claims(summary: pd.DataFrame) -> pd.DataFrame:
    """Section 4.2's claims on Table 3, one row per comparison, paired by seed and decided within each ``family``
    (``stats.claims``)."""
    comparisons = []
    for attack in QOA:
        comparisons += [
            Comparison("QAT more robust than FP", f"{attack}: QAT {s} more robust than FP", (s, attack), ("fp", attack))
            for s in ROWS[1:]
        ]
        comparisons += [
            Comparison(
                "lower bits more robust", f"{attack}: {low} more robust than {high}", (low, attack), (high, attack)
            )
            for low, high in LOWER_BITS
        ]
        comparisons += [
            Comparison("WA more robust than W", f"{attack}: {wa} more robust than {w}", (wa, attack), (w, attack))
            for wa, w in WA_VS_W
        ]
    comparisons += [
        Comparison("QAA stronger than QOA", f"{s}: {aware} stronger than {oblivious}", (s, oblivious), (s, aware))
        for s in ROWS[1:]
        for aware, oblivious in QAA.items()
    ]
    return test_claims(summary.set_index(["scheme", "attack"]), comparisons, paper.TABLE3, _paper_key)


# -- what the notebook shows --


def _paper_clean(scheme: str) -> float | None:
    """The paper's clean accuracy of Table 3's row ``scheme``."""
    task, method, _ = _paper_key((scheme, None))
    return paper.CLEAN.get(("FP" if scheme == "fp" else "QAT", task, method))


def table3(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 3: per scheme, clean accuracy and each attack's drop, ours (mean ± std over seeds) beside the paper's;
    blank where the paper has no entry (QAA in FP)."""
    by = summary(runs).set_index(["scheme", "attack"])
    clean = mean_std(runs.drop_duplicates(["scheme", "seed"]), "clean_acc", ["scheme"]).set_index(
        "scheme"
    )  # one per seed
    entry = lambda s, a, show: show(by.loc[(s, a)]) if (s, a) in by.index else ""
    columns = {
        ("clean acc.", "ours"): [fmt_pct(clean.loc[s, "mean"], clean.loc[s, "std"]) for s in ROWS],
        ("clean acc.", "paper's"): [percent(_paper_clean(s)) for s in ROWS],
    }
    for a in COLUMNS:
        columns[(a, "ours")] = [entry(s, a, lambda r: f"{100 * r['mean']:+.2f} ± {100 * r['std']:.2f}") for s in ROWS]
        columns[(a, "paper's")] = [entry(s, a, lambda r: points(r["paper"])) for s in ROWS]
    return pd.DataFrame(columns, index=pd.Index(ROWS, name="scheme"))


def seed_drops(runs: pd.DataFrame) -> pd.DataFrame:
    """Each seed's drop (points) per scheme and attack: the spread behind Table 3's means."""
    return summary(runs).set_index(["scheme", "attack"]).filter(like="seed ").map(points)


def extra_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The paper's ↓ column (:func:`extra_drop`) per scheme and QAA, ours beside the paper's, in points."""
    extra = extra_drop(summary(runs))
    return (
        extra.assign(ours=extra.ours.map(points), paper=extra.paper.map(points))
        .pivot(index="scheme", columns="attack", values=["ours", "paper"])
        .loc[ROWS[1:]]
    )


def _fp_drops(summary: pd.DataFrame) -> pd.Series:
    """The mean FP drop of each QOA."""
    return summary[summary.scheme == "fp"].set_index("attack")["mean"]


def figure3(runs: pd.DataFrame) -> plt.Axes:
    """Table 3 as a figure: the drop per scheme, one colour per attack, with each QOA's FP drop dashed."""
    palette = dict(zip(COLUMNS, sns.color_palette(n_colors=len(COLUMNS))))
    ax = sns.pointplot(
        data=runs.assign(drop=100 * runs["drop"]),
        x="scheme",
        y="drop",
        hue="attack",
        order=ROWS,
        hue_order=COLUMNS,
        palette=palette,
        errorbar="sd",
        dodge=0.5,
        capsize=0.05,
        linestyle="none",
    )
    for attack, value in _fp_drops(summary(runs)).items():
        ax.axhline(100 * value, c=palette[attack], ls="--", lw=0.8)
    ax.axhline(0, c="grey", lw=0.8)
    ax.tick_params(axis="x", rotation=30)
    ax.set(
        ylabel="accuracy drop (points, mean ± std over seeds)",
        xlabel="QAT scheme (dashed: the FP drop of each QOA)",
        title=f"Table 3 at ε_d = {runs.eps_d.iloc[0]}",
    )
    return ax


def claim_counts(claims: pd.DataFrame) -> pd.DataFrame:
    """How many claims of each family hold, are undecided or fail."""
    return claims.pivot_table(index="family", columns="our run", values="claim", aggfunc="count", fill_value=0)


def headline(cfg: Preset, runs: pd.DataFrame) -> str:
    """What this shows: the FP drops, each family's verdicts, the QAA's extra drop beside the paper's and the
    largest QAT drop."""
    s = summary(runs)
    tested, extra = claims(s), extra_drop(s)
    say = lambda family: tally(tested[tested.family == family])
    qaa = extra.groupby("attack")["ours"].agg(["mean", "min", "max"])
    strongest = s[s.scheme != "fp"].sort_values("mean").iloc[0]
    return (
        f"**Table 3 on {cfg.dataset} ({cfg.model}, {len(cfg.seeds)} seed(s), ε_d = {cfg.eps_d}):** "
        "in FP the QOA drops are " + ", ".join(f"{a} {points(v)}" for a, v in _fp_drops(s).items()) + " points. "
        "Claims, paired by seed and decided within each family: "
        f"QAT more robust than FP: {say('QAT more robust than FP')}; "
        f"lower bits more robust: {say('lower bits more robust')}; "
        f"WA more robust than W: {say('WA more robust than W')}; QAA stronger than QOA: {say('QAA stronger than QOA')}"
        + (f" ({len(cfg.seeds)} seed: no test)" if len(cfg.seeds) < 2 else "")
        + f". {tested.agrees.sum()} of {tested.agrees.notna().sum()} verdicts agree with the paper's own table. "
        "The QAA's extra drop over its QOA, averaged over schemes: "
        + ", ".join(
            f"{a} {points(r['mean'])} (from {points(r['min'])} to {points(r['max'])})" for a, r in qaa.iterrows()
        )
        + " points (the paper: "
        + ", ".join(f"{a} {points(v)}" for a, v in extra.groupby("attack")["paper"].mean().items())
        + f"). The largest QAT drop is {strongest.attack} on {strongest.scheme}: {points(strongest['mean'])} ± "
        f"{100 * strongest['std']:.2f} points; the largest seed std of any cell is {100 * s['std'].max():.2f} points."
    )
