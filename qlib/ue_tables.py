"""Table 5 (Section 4.3): the eight unlearnable examples against full-precision training and 1W1A QAT (BNN,
and Adabin as the paper's footnote 5 uses), as tidy summaries beside the paper's numbers, with its claims
tested (verdicts as in :mod:`qlib.tables`).

Unlearnable examples perturb the whole training set (ε_d = 1), which replaces μ (see ``data.mix``); each
poison is made once per seed against full-precision surrogates and reused in every column.
"""

from dataclasses import replace

import pandas as pd

from . import paper
from .attacks.unlearnable import UNLEARNABLE
from .presets import Preset
from .quant import parse_scheme
from .study import FP, attack_drops, mean_std
from .tables import claim, drop_summary

EPS_D = 1.0  # every training image is perturbed
UE_CELLS = [("fp", FP), ("qat", parse_scheme("1W1A", "bnn")), ("qat", parse_scheme("1W1A", "adabin"))]
COLUMNS = [s.name for _, s in UE_CELLS]  # Table 5's columns: "fp", "1W1A bnn", "1W1A adabin"
PAPER_COLUMN = {"fp": "fp", "1W1A adabin": "1W1A adabin"}  # the paper's 1W1A column is Adabin; it has no BNN column


def table5_preset(cfg: Preset) -> Preset:
    """``cfg`` with Table 5's training-set size (``unlearnable_train_size``, if set)."""
    return replace(cfg, train_size=cfg.unlearnable_train_size or cfg.train_size)


def table5(cfg: Preset, progress: bool = True) -> pd.DataFrame:
    """Table 5's runs: each method's poison (one per seed), retrained in FP and by 1W1A QAT (BNN, Adabin)."""
    return attack_drops(table5_preset(cfg), list(UNLEARNABLE), [EPS_D], UE_CELLS, progress)


def table5_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per column (scheme) and method: clean and poisoned accuracy, the drop (mean, std, per seed) and
    the paper's drop and clean accuracy where the paper has that column."""
    summary = drop_summary(df, ["scheme", "attack"])
    accs = df.groupby(["scheme", "attack"], sort=False).agg(clean_acc=("clean_acc", "mean"), acc=("acc", "mean"),
                                                           acc_std=("acc", "std"))
    summary = summary.join(accs, on=["scheme", "attack"])
    column = summary.scheme.map(PAPER_COLUMN)
    return summary.assign(paper=[paper.TABLE5.get(k) for k in zip(column, summary.attack)],
                          paper_clean=column.map(paper.TABLE5_CLEAN))


def increase(df: pd.DataFrame) -> pd.DataFrame:
    """The accuracy increase QAT gives (the paper's ↑): a QAT column's drop minus FP's, paired by seed, per
    method, as mean ± std over seeds beside the paper's (positive = QAT is more robust)."""
    drops = df.pivot_table(index=["attack", "seed"], columns="scheme", values="drop", sort=False)
    rows = [{"scheme": scheme, "attack": attack, "seed": seed, "increase": drops.loc[(attack, seed), scheme] - drops.loc[(attack, seed), "fp"]}
            for attack, seed in drops.index for scheme in COLUMNS[1:]]
    out = mean_std(pd.DataFrame(rows), "increase", ["scheme", "attack"])
    paper_increase = lambda scheme, attack: (paper.TABLE5[(PAPER_COLUMN[scheme], attack)] - paper.TABLE5[("fp", attack)]
                                             if scheme in PAPER_COLUMN else None)
    return out.assign(paper=[paper_increase(s, a) for s, a in zip(out.scheme, out.attack)])


def generation_times(df: pd.DataFrame) -> pd.DataFrame:
    """Each method's poison-generation wall time (seconds when the poison was made; mean, std over seeds, total)."""
    per_seed = df.drop_duplicates(["attack", "seed"])
    out = mean_std(per_seed, "attack_seconds", ["attack"])
    return out.join(per_seed.groupby("attack")["attack_seconds"].sum().rename("total"), on="attack")


def table5_claims(summary: pd.DataFrame) -> pd.DataFrame:
    """Section 4.3's claims on Table 5, one row per comparison, grouped by ``family``:

    - each method lowers accuracy, in FP and under each 1W1A QAT (UE "continue to be largely effective");
    - QAT is more robust than FP against each method (every row of Table 5 shows an accuracy increase).
    """
    row = summary.set_index(["scheme", "attack"]).loc
    clean = pd.Series({"mean": 0.0, "std": 0.0})  # no attack: a drop of exactly zero
    reference = {**{("clean", a): 0.0 for a in UNLEARNABLE}, **paper.TABLE5}
    rows = []
    for attack in UNLEARNABLE:
        for scheme in COLUMNS:
            rows.append({"family": "lowers accuracy", **claim(
                f"{attack} lowers {scheme} accuracy", clean, row[(scheme, attack)], reference, ("clean", attack),
                (PAPER_COLUMN.get(scheme), attack))})
        for scheme in COLUMNS[1:]:
            rows.append({"family": "QAT more robust than FP", **claim(
                f"{attack}: QAT {scheme} more robust than FP", row[(scheme, attack)], row[("fp", attack)], paper.TABLE5,
                (PAPER_COLUMN.get(scheme), attack), ("fp", attack))})
    return pd.DataFrame(rows)
