"""Notebook 00: clean baselines, and clean accuracy under every scheme of the paper.

Cells: per seed, the clean FP model with its learning curve (``qlib.cells.trained``) and the accuracy of it in FP,
after PTQ under ``paper.W_SCHEMES``, and of the QAT model of each of ``paper.QAT_SCHEMES`` (``qlib.cells.accuracy``).
Attacks: none. Constants: ``SETTINGS``. The paper's numbers: ``paper.CLEAN`` (the clean rows of Tables 1 and 3).
Checks: QAT 8W within 1 point of FP and PTQ 8-bit within 0.5 (the means); PTQ ordered 1 ≤ 4 ≤ 8 bits (no paired
t-test, ``stats.paired``, finds a higher bit-width below a lower one); QAT 1W well above chance. The notebook shows
the preset, the FP runs and learning curves, the accuracy table and figure per scheme, the checks and a headline.
"""

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .. import paper
from ..cells import accuracy, trained
from ..paper import FP, QAT_SCHEMES, W_SCHEMES
from ..presets import Preset
from ..stats import ALPHA, fmt_pct, mean_std, paired, percent, points, summarise
from . import Entry, ensure, grid_cells, grid_rows

SETTINGS = [("fp", FP)] + [("ptq", s) for s in W_SCHEMES] + [("qat", s) for s in QAT_SCHEMES]


def grid(cfg: Preset) -> list[Entry]:
    return [
        (
            {"seed": seed, "regime": regime, "scheme": scheme},
            {
                "model": trained(cfg, seed, scheme if regime == "qat" else FP),
                "acc": accuracy(cfg, seed, regime, scheme),
            },
        )
        for seed in cfg.seeds
        for regime, scheme in SETTINGS
    ]


def cells(cfg: Preset) -> list:
    return grid_cells(grid(cfg))


def run(cfg: Preset, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per seed and setting: clean test accuracy and training time; one row per seed and epoch: the FP
    learning curve)."""
    entries = grid(cfg)
    ensure(grid_cells(entries), progress)
    curves = []

    def row(labels, values):
        history = values["model"][1]
        if labels["regime"] == "fp":
            curves.extend({"seed": labels["seed"], **h} for h in history)
        scheme = labels["scheme"]
        return {
            "regime": labels["regime"].upper(),
            "scheme": scheme.task,
            "method": scheme.method,
            "seed": labels["seed"],
            "test_acc": values["acc"]["acc"],
            "train_seconds": sum(h["seconds"] for h in history),
        }

    schemes = grid_rows(entries, row)
    return schemes, pd.DataFrame(curves)


def summary(schemes: pd.DataFrame) -> pd.DataFrame:
    """Per scheme: our mean ± std over seeds and one column per seed, the change against our FP model, and the
    paper's numbers."""
    out = summarise(schemes, ["regime", "scheme", "method"], "test_acc")
    out["vs_fp"] = out["mean"] - out.loc[out.regime == "FP", "mean"].item()
    out["paper"] = [paper.CLEAN.get(k) for k in zip(out.regime, out.scheme, out.method)]
    out["paper_vs_fp"] = out["paper"] - paper.CLEAN[("FP", "fp", "fp")]
    return out


def claims(summary: pd.DataFrame, num_classes: int) -> pd.DataFrame:
    """The quantization acceptance marks, each with the measured value and whether our run meets it. "Ordered" is a
    check for a failure, not a claim: it fails only where the paired t-test of the higher bit-width's accuracy minus
    the lower one's, per seed, finds it below at α = 0.05 (unadjusted: quicker to fail than a BH-adjusted claim),
    or, with one seed, where the higher is below."""
    row = lambda regime, task: summary[(summary.regime == regime) & (summary.scheme == task)].iloc[0]
    fp, q8, p1, p4, p8 = row("FP", "fp"), row("QAT", "8W"), row("PTQ", "1W"), row("PTQ", "4W"), row("PTQ", "8W")
    qat_1w = summary[(summary.regime == "QAT") & (summary.scheme == "1W")]

    def ordered(lo, hi):
        test = paired(hi.filter(like="seed ") - lo.filter(like="seed "))
        return test["mean"] >= 0 if test["n"] < 2 else not (test["p"] <= ALPHA and test["mean"] < 0)

    checks = [
        (
            "QAT 8W within 1 point of FP",
            f"{100 * (q8['mean'] - fp['mean']):+.2f} points",
            abs(q8["mean"] - fp["mean"]) <= 0.01,
        ),
        (
            "PTQ 8-bit within 0.5 points of FP",
            f"{100 * (p8['mean'] - fp['mean']):+.2f} points",
            abs(p8["mean"] - fp["mean"]) <= 0.005,
        ),
        (
            "PTQ accuracy ordered 1 ≤ 4 ≤ 8 bits (no paired t-test finds otherwise)",
            f"{100 * p1['mean']:.2f} / {100 * p4['mean']:.2f} / {100 * p8['mean']:.2f}%",
            ordered(p1, p4) and ordered(p4, p8),
        ),
        (
            f"QAT 1W well above chance ({100 / num_classes:.0f}%)",
            " / ".join(f"{m}: {100 * a:.2f}%" for m, a in zip(qat_1w.method, qat_1w["mean"])),
            bool((qat_1w["mean"] > 2 / num_classes).all()),
        ),
    ]
    return pd.DataFrame(checks, columns=["claim", "measured", "holds"])


# -- what the notebook shows --


def _fp(schemes: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """(the FP rows, one per seed; their test accuracy's mean, std and n)."""
    finals = schemes[schemes.regime == "FP"]
    return finals, mean_std(finals, "test_acc").iloc[0]


def fp_runs(schemes: pd.DataFrame):
    """The clean FP model per seed: test accuracy and training time (a Styler)."""
    finals = schemes.loc[schemes.regime == "FP", ["seed", "test_acc", "train_seconds"]]
    return finals.style.format({"test_acc": "{:.2%}", "train_seconds": "{:.1f} s"}).hide(axis="index")


def fp_accuracy(schemes: pd.DataFrame) -> pd.DataFrame:
    """Clean FP accuracy (mean ± std over seeds), the number of seeds and the mean training time, in one row."""
    finals, fp = _fp(schemes)
    return pd.DataFrame(
        {
            "clean FP test accuracy": [fmt_pct(fp["mean"], fp["std"])],
            "seeds": [int(fp["n"])],
            "mean training time": [f"{finals.train_seconds.mean():.1f} s"],
        }
    )


def learning_curves(curves: pd.DataFrame) -> sns.FacetGrid:
    """Test accuracy and training loss per epoch, one panel each; the band is the spread over seeds."""
    long = curves.melt(id_vars=["seed", "epoch"], value_vars=["test_acc", "train_loss"], var_name="metric")
    grid = sns.relplot(
        data=long,
        x="epoch",
        y="value",
        col="metric",
        kind="line",
        errorbar="sd",
        marker="o",
        facet_kws={"sharey": False},
        height=3.2,
        aspect=1.3,
    )
    return grid.set_titles("{col_name}")


def scheme_table(schemes: pd.DataFrame) -> pd.DataFrame:
    """Clean accuracy per scheme: ours (mean ± std, per seed) and its change against FP, beside the paper's."""
    keys = ["regime", "scheme", "method"]
    table = summary(schemes).set_index(keys)
    seed_cols = [c for c in table.columns if c.startswith("seed ")]
    return pd.DataFrame(
        {
            "ours (mean ± std)": [fmt_pct(m, s) for m, s in zip(table["mean"], table["std"])],
            **{c: table[c].map(percent) for c in seed_cols},
            "ours vs FP (points)": table.vs_fp.map(points),
            "paper (CIFAR-10)": table.paper.map(percent),
            "paper vs FP (points)": table.paper_vs_fp.map(points),
        },
        index=table.index,
    )


def scheme_figure(schemes: pd.DataFrame) -> plt.Axes:
    """Clean accuracy per scheme (mean ± std over seeds), against the FP mean (dashed)."""
    label = (
        schemes.regime + " " + schemes.scheme + " " + schemes.method.where(schemes.method.isin(["bnn", "bnn++"]), "")
    )
    ax = sns.pointplot(
        data=schemes.assign(scheme=label), x="test_acc", y="scheme", errorbar="sd", linestyle="none", capsize=0.3
    )
    ax.axvline(schemes.loc[schemes.regime == "FP", "test_acc"].mean(), ls="--", c="grey", label="FP mean")
    ax.set(xlabel="clean test accuracy (mean ± std over seeds)", ylabel="")
    ax.legend(loc="lower left")
    return ax


def headline(cfg: Preset, schemes: pd.DataFrame, checks: pd.DataFrame) -> str:
    """What this shows: the clean FP accuracy and its seed spread, the change PTQ and QAT make, and the checks."""
    (finals, fp), by_scheme = _fp(schemes), summary(schemes)
    ptq_rows, qat_rows = by_scheme[by_scheme.regime == "PTQ"], by_scheme[by_scheme.regime == "QAT"]
    label = lambda r: r.scheme + ("" if r.method == "int" else f" {r.method}")
    failed = "" if checks.holds.all() else ": not " + "; not ".join(checks.claim[~checks.holds])
    return (
        f"**Clean FP accuracy on {cfg.dataset} ({cfg.model}, width {cfg.width}):** "
        f"{fmt_pct(fp['mean'], fp['std'])} over {int(fp['n'])} seed(s), {cfg.epochs} epoch(s) on "
        f"{cfg.train_size or 'all'} training images; seeds differ by up to "
        f"{100 * (finals.test_acc.max() - finals.test_acc.min()):.2f} points, the noise floor for later tables. "
        f"Against FP, PTQ at 1/4/8 bits changes accuracy by {' / '.join(ptq_rows.vs_fp.map(points))} points, "
        "and QAT by "
        + ", ".join(f"{label(r)} {points(r.vs_fp)}" for r in qat_rows.itertuples())
        + f" points. {int(checks.holds.sum())} of {len(checks)} quantization checks hold{failed}."
    )
