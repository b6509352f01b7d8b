"""Notebook 04: the eight unlearnable examples against FP and 1W1A QAT (Table 5, Section 4.3).

Cells: the attack grid (``attack_grid``) of the unlearnable examples at ε_d = ``EPS_D`` (every image is perturbed; the
poison replaces μ) in ``SETTINGS``: FP, and 1W1A QAT with BNN and with Adabin (the paper's footnote 5), on the preset of
:func:`preset` (``experiments.unlearnable.train_size`` images). Each poison is made once per seed against FP surrogates
and reused in every column. Constants: ``COLUMNS`` (Table 5's columns), ``PAPER_COLUMN`` (which of ours the paper has).
The paper's numbers: ``paper.TABLE5`` (drops), ``paper.TABLE5_CLEAN``. Claims: each method lowers accuracy in every
column; QAT is more robust than FP against each method (the paper's ↑, paired by seed).
The notebook shows the preset, Table 5 with ↑, drops per seed, budgets and times, a figure, claims, a headline.
"""

from dataclasses import replace

import pandas as pd
import seaborn as sns

from .. import paper
from ..attacks.unlearnable import UNLEARNABLE
from ..paper import FP
from ..presets import Preset
from ..quant import parse_scheme
from ..stats import Comparison, mean_std, paired_difference, points, summarise, tally
from ..stats import claims as test_claims
from . import attack_grid, ensure, grid_cells

EPS_D = 1.0
SETTINGS = [("fp", FP), ("qat", parse_scheme("1W1A", "bnn")), ("qat", parse_scheme("1W1A", "adabin"))]
COLUMNS = [s.name for _, s in SETTINGS]  # "fp", "1W1A bnn", "1W1A adabin"
PAPER_COLUMN = {"fp": "fp", "1W1A adabin": "1W1A adabin"}  # the paper's 1W1A column is Adabin; it has no BNN column


def preset(cfg: Preset) -> Preset:
    """``cfg`` with Table 5's training-set size (``experiments.unlearnable.train_size``, if set)."""
    return replace(cfg, train_size=cfg.experiments.unlearnable.train_size or cfg.train_size)


def grid(cfg: Preset) -> list:
    return attack_grid.entries(preset(cfg), list(UNLEARNABLE), [EPS_D], SETTINGS)


def cells(cfg: Preset) -> list:
    return grid_cells(grid(cfg))


def run(cfg: Preset, progress: bool = True) -> pd.DataFrame:
    """Table 5's runs: each method's poison (one per seed), retrained in FP and by 1W1A QAT (BNN, Adabin)."""
    entries = grid(cfg)
    ensure(grid_cells(entries), progress)
    return attack_grid.rows(entries)


def _paper_key(key: tuple):
    scheme, attack = key
    return PAPER_COLUMN.get(scheme), attack


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per column and method: clean and poisoned accuracy, the drop (mean, std, per seed), the paper's drop
    and clean accuracy where the paper has that column."""
    out = summarise(
        runs,
        ["scheme", "attack"],
        paper=paper.TABLE5,
        means=("clean_acc", "acc"),
        paper_key=lambda row: _paper_key((row.scheme, row.attack)),
    )
    out = out.join(runs.groupby(["scheme", "attack"])["acc"].std().rename("acc_std"), on=["scheme", "attack"])
    return out.assign(paper_clean=out.scheme.map(PAPER_COLUMN).map(paper.TABLE5_CLEAN))


def increase(runs: pd.DataFrame) -> pd.DataFrame:
    """The accuracy increase QAT gives (the paper's ↑): a QAT column's drop minus FP's, paired by seed, per method,
    as mean ± std over seeds beside the paper's (positive = QAT is more robust)."""
    out = mean_std(paired_difference(runs, ["attack"], "scheme", "fp"), "difference", ["scheme", "attack"])
    paper_increase = lambda scheme, attack: (
        paper.TABLE5[(PAPER_COLUMN[scheme], attack)] - paper.TABLE5[("fp", attack)] if scheme in PAPER_COLUMN else None
    )
    return out.assign(paper=[paper_increase(s, a) for s, a in zip(out.scheme, out.attack)])


def generation_times(runs: pd.DataFrame) -> pd.DataFrame:
    """Each method's poison-generation wall time (seconds when the poison was made; mean, std over seeds, total)."""
    per_seed = runs.drop_duplicates(["attack", "seed"])
    out = mean_std(per_seed, "attack_seconds", ["attack"])
    return out.join(per_seed.groupby("attack")["attack_seconds"].sum().rename("total"), on="attack")


def claims(summary: pd.DataFrame) -> pd.DataFrame:
    """Section 4.3's claims on Table 5, paired by seed and decided within each ``family`` (``stats.claims``): each
    method lowers accuracy in each column (its drop below the clean model's, which is 0 in every seed); QAT is more
    robust than FP against each method."""
    by = summary.set_index(["scheme", "attack"])
    seeds = by.filter(like="seed ").columns
    clean = pd.DataFrame(
        0.0, index=pd.MultiIndex.from_product([["clean"], UNLEARNABLE], names=by.index.names), columns=seeds
    )
    comparisons = []
    for a in UNLEARNABLE:
        comparisons += [
            Comparison("lowers accuracy", f"{a} lowers {s} accuracy", ("clean", a), (s, a)) for s in COLUMNS
        ]
        comparisons += [
            Comparison("QAT more robust than FP", f"{a}: QAT {s} more robust than FP", (s, a), ("fp", a))
            for s in COLUMNS[1:]
        ]
    reference = {**{("clean", a): 0.0 for a in UNLEARNABLE}, **paper.TABLE5}
    key = lambda k: k if k[0] == "clean" else _paper_key(k)
    return test_claims(pd.concat([by, clean]), comparisons, reference, key)


# -- what the notebook shows --


def _clean_acc(runs: pd.DataFrame, scheme: str) -> pd.Series:
    """The clean model's accuracy in column ``scheme``, one per seed."""
    return runs[runs.scheme == scheme].drop_duplicates("seed")["clean_acc"]


def _clean_cell(runs: pd.DataFrame, scheme: str) -> str:
    """Clean accuracy in column ``scheme`` as ``89.31 ± 0.22`` (percent; std 0 for one seed)."""
    acc = _clean_acc(runs, scheme)
    return f"{100 * acc.mean():.2f} ± {100 * acc.std(ddof=min(1, len(acc) - 1)):.2f}"


def table5(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 5: clean accuracy, then each method's drop per column and the accuracy increase QAT gives (↑), ours
    (mean ± std, points) beside the paper's."""
    cell, inc = summary(runs).set_index(["scheme", "attack"]), increase(runs).set_index(["scheme", "attack"])
    ms = lambda row: f"{100 * row['mean']:+.2f} ± {100 * row['std']:.2f}"
    table = pd.DataFrame(
        [
            {
                "FP: ours": _clean_cell(runs, "fp"),
                "FP: paper": f"{100 * paper.TABLE5_CLEAN['fp']:.2f}",
                "1W1A BNN: ours": _clean_cell(runs, "1W1A bnn"),
                "1W1A Adabin: ours": _clean_cell(runs, "1W1A adabin"),
                "1W1A (Adabin): paper": f"{100 * paper.TABLE5_CLEAN['1W1A adabin']:.2f}",
            }
        ]
        + [
            {
                "FP: ours": ms(cell.loc[("fp", a)]),
                "FP: paper": points(paper.TABLE5[("fp", a)]),
                "1W1A BNN: ours": ms(cell.loc[("1W1A bnn", a)]),
                "1W1A Adabin: ours": ms(cell.loc[("1W1A adabin", a)]),
                "1W1A (Adabin): paper": points(paper.TABLE5[("1W1A adabin", a)]),
                "↑ BNN: ours": ms(inc.loc[("1W1A bnn", a)]),
                "↑ Adabin: ours": ms(inc.loc[("1W1A adabin", a)]),
                "↑ paper": points(inc.loc[("1W1A adabin", a), "paper"]),
            }
            for a in UNLEARNABLE
        ],
        index=["clean (accuracy %)"] + [a.upper() for a in UNLEARNABLE],
    )
    return table.fillna("")


def per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """Per method and column: poisoned accuracy (mean ± std), clean accuracy, and the drop of each seed (points)."""
    s = summary(runs)
    seed_cols = [c for c in s.columns if c.startswith("seed ")]
    return pd.DataFrame(
        {
            "poisoned accuracy (%)": [f"{100 * a:.2f} ± {100 * sd:.2f}" for a, sd in zip(s.acc, s.acc_std.fillna(0))],
            "clean accuracy (%)": (100 * s.clean_acc).round(2),
            **{c: s[c].map(points) for c in seed_cols},
        }
    ).set_index([s.attack.str.upper().rename("method"), s.scheme.rename("column")])


def budgets(cfg: Preset, runs: pd.DataFrame) -> pd.DataFrame:
    """Per method: the norm and radius its poisons declare, the preset's settings, and its generation time."""
    times = generation_times(runs).set_index("attack")
    declared = runs.drop_duplicates("attack").set_index("attack")[["norm", "eps"]]
    return pd.DataFrame(
        {
            "norm": declared.norm,
            "radius": declared.eps.map(lambda e: f"{e:.4g}" + (f" (= {255 * e:.3g}/255)" if e < 1 else "")),
            "settings (preset)": [cfg.attacks.get(a, {}) for a in declared.index],
            "generation (s, mean ± std)": [f"{m:.1f} ± {sd:.1f}" for m, sd in zip(times["mean"], times["std"])],
            "generation (s, all seeds)": times.total.round(1),
        }
    ).rename(index=str.upper)


def figure5(runs: pd.DataFrame) -> sns.FacetGrid:
    """Table 5 as bars: each method's drop per column, ours (mean ± std over seeds) beside the paper's."""
    both = pd.concat(
        [
            runs.assign(source="ours (mean ± std over seeds)", drop=100 * runs["drop"]),
            pd.DataFrame(
                [
                    {"attack": a, "scheme": column, "drop": 100 * v, "source": "paper (CIFAR-10, one run)"}
                    for (column, a), v in paper.TABLE5.items()
                ]
            ),
        ],
        ignore_index=True,
    )
    both["method"] = both.attack.str.upper()
    grid = sns.catplot(
        data=both,
        x="method",
        y="drop",
        hue="scheme",
        col="source",
        kind="bar",
        errorbar="sd",
        order=[a.upper() for a in UNLEARNABLE],
        hue_order=COLUMNS,
        height=3.4,
        aspect=1.5,
        sharey=False,
    )
    grid.set(xlabel="unlearnable-example method (ε_d = 1)", ylabel="accuracy drop (points)")
    for ax in grid.axes.flat:
        ax.axhline(0, c="grey", lw=0.8)
    return grid


def headline(cfg: Preset, runs: pd.DataFrame) -> str:
    """What this shows: the range of the FP drops, the claims' verdicts per family, the mean accuracy increase QAT
    gives, and how many verdicts agree with the paper's."""
    s = summary(runs)
    tested, inc = claims(s), increase(runs)
    say = lambda family: tally(tested[tested.family == family])
    fp = s[s.scheme == "fp"].set_index("attack")["mean"]
    mean_inc = inc.groupby("scheme")["mean"].mean()
    return (
        f"**Table 5 on {cfg.dataset} ({cfg.model}, {preset(cfg).train_size or 'all'} training images, "
        f"{len(cfg.seeds)} seed(s), ε_d = 1):** in full precision the eight methods change clean accuracy "
        f"({100 * _clean_acc(runs, 'fp').mean():.2f}%) by between {points(fp.max())} ({fp.idxmax().upper()}) and "
        f"{points(fp.min())} ({fp.idxmin().upper()}) points (the paper: −70.60 to −85.90 on CIFAR-10). "
        f"Claims, paired by seed: 'lowers accuracy' {say('lowers accuracy')}; 'QAT more robust than FP' "
        f"{say('QAT more robust than FP')}; "
        f"the mean accuracy increase over the methods is {points(mean_inc.get('1W1A bnn'))} points with BNN and "
        f"{points(mean_inc.get('1W1A adabin'))} with Adabin (the paper, Adabin: "
        f"{points(inc.loc[inc.scheme == '1W1A adabin', 'paper'].mean())}). "
        f"Of the claims the paper's own table decides, {int(tested.agrees.sum())} "
        f"of {int(tested.agrees.notna().sum())} "
        "agree with it."
    )
