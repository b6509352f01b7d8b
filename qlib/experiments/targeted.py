"""Notebook 05: the targeted attack of Section 4.3, gradient matching against FP and QAT at the preset's
``experiments.targeted.bits`` (the paper's: 1, 3, 4, 5 and 8 bits).

A *trial* is one target and one seed s. The attacker trains a clean surrogate from seed s and crafts ε_d
(``experiments.targeted.eps_d``) poisons against it: in full precision (quantization-oblivious poisons, used against
every precision), or through the clean QAT model of each scheme (quantization-aware, used against that scheme). The
victim trains from scratch on μ with the poisons in place, from seed s + ``cells.VICTIM_SEED`` (an initialisation and
batch order the attacker does not know, Witches' Brew's validation). The attack succeeds when the victim puts the target
in the adversarial class; the paper's looser criterion is any misclassification. Clean victims of the same seeds give
the rates without poisons.
Cells: ``qlib.cells.targets`` (the targets, chosen with the FP surrogate of the first trial seed), then per trial,
precision of :func:`precisions` and kind of poison of ``POISONS``, the poison (``qlib.cells.poison``, gradient matching)
and the victim (``qlib.cells.victim``); aware poisons skip FP. All on the preset of :func:`preset`. The paper's
numbers: ``paper.TARGETED_FP``, ``paper.TARGETED_QAT_RANGE`` (misclassification). Claims, paired by trial, on the
two outcomes (``stats.mcnemar``) and on the pull toward the adversarial class (``stats.paired``): the attack works
in FP; QAT lowers the FP rate; aware poisons beat oblivious ones.
The notebook shows the preset, the rates (table, figure), the pull, successes per target, crafting, claims, a headline.
"""

import math
from dataclasses import replace

import matplotlib.pyplot as plt
import pandas as pd

from .. import paper
from ..cells import VICTIM_SEED, poison, targets, victim
from ..paper import FP
from ..presets import Preset
from ..quant import QuantScheme, parse_scheme
from ..registry import ParameterError
from ..stats import Comparison, mcnemar, mean_std, rate, tally
from ..stats import claims as test_claims
from . import Stage, ensure, grid_cells, grid_rows

QAT_SCHEMES = [
    parse_scheme("1W", "bnn"),
    parse_scheme("3W"),
    parse_scheme("4W"),
    parse_scheme("5W"),
    parse_scheme("8W"),
]
PRECISIONS = [FP] + QAT_SCHEMES  # the paper's: full precision and QAT at 1, 3, 4, 5, 8 bits (weights)
POISONS = ("none", "oblivious", "aware")


def precision(scheme: QuantScheme) -> str:
    return "FP" if scheme.is_fp else f"{scheme.w_bits}-bit"


def precisions(cfg: Preset) -> list[QuantScheme]:
    """The victims' precisions: FP and QAT at each of ``experiments.targeted.bits`` (the paper's: all of
    ``QAT_SCHEMES``)."""
    return [FP] + [s for s in QAT_SCHEMES if s.w_bits in cfg.experiments.targeted.bits]


def preset(cfg: Preset) -> Preset:
    """``cfg`` with the targeted experiment's training-set size and epochs (``experiments.targeted``'s
    ``train_size`` and ``epochs``), its trial seeds checked: a trial seed may not be another trial's victim seed."""
    t = cfg.experiments.targeted
    if clash := sorted(set(t.seeds) & {s + VICTIM_SEED for s in t.seeds}):
        raise ParameterError(
            f"experiments.targeted.seeds {t.seeds}: seed(s) {clash} would train a surrogate that is also "
            f"another trial's victim (victims use seed + {VICTIM_SEED}); use distinct seeds below {VICTIM_SEED}"
        )
    return replace(cfg, train_size=t.train_size or cfg.train_size, epochs=t.epochs or cfg.epochs)


def first_targets(cfg: Preset):
    """The targets cell: ``experiments.targeted.targets`` test images chosen with the first trial seed's surrogate."""
    t = cfg.experiments.targeted
    return targets(preset(cfg), t.seeds[0], t.targets)


def chosen(cfg: Preset, progress: bool = True) -> list[dict]:
    """The targets (computed here, serially, if the cache lacks them: one FP surrogate and one pass over the test
    set)."""
    cell = first_targets(cfg)
    ensure([cell], progress)
    return cell.value()["targets"]


def grid(cfg: Preset, chosen_targets: list[dict]) -> list:
    tcfg = preset(cfg)
    entries = []
    for t in chosen_targets:
        for seed in tcfg.experiments.targeted.seeds:
            for scheme in precisions(tcfg):
                for kind in POISONS:
                    if kind == "aware" and scheme.is_fp:
                        continue
                    nu = (
                        None
                        if kind == "none"
                        else poison(
                            tcfg,
                            "gradient_matching",
                            seed,
                            tcfg.experiments.targeted.eps_d,
                            FP if kind == "oblivious" else scheme,
                            target_index=t["target_index"],
                            adversarial_class=t["adversarial_class"],
                            curve=False,
                        )
                    )
                    cells = {"victim": victim(tcfg, seed, scheme, t["target_index"], t["adversarial_class"], nu)}
                    entries.append(
                        (
                            {**t, "seed": seed, "precision": precision(scheme), "scheme": scheme.name, "poisons": kind},
                            cells | ({"poison": nu} if nu is not None else {}),
                        )
                    )
    return entries


def placeholders(count: int) -> list[dict]:
    """``count`` stand-ins for chosen targets, for planning: which test images they are does not change the work."""
    return [{"target": t, "target_index": t, "true_class": 0, "adversarial_class": 1} for t in range(count)]


def cells(cfg: Preset, chosen_targets: list[dict]) -> list:
    """Every cell of the trials of ``chosen_targets``, with the targets cell that chose them."""
    return [first_targets(cfg), *grid_cells(grid(cfg, chosen_targets))]


def stages(cfg: Preset) -> list:
    """The targets are chosen first (one FP surrogate and a pass over the test set); the trials follow them."""
    return [
        Stage("targets", lambda: [first_targets(cfg)]),
        Stage(
            "targeted trials",
            lambda: cells(cfg, first_targets(cfg).value()["targets"]),
            plan=lambda: cells(cfg, placeholders(cfg.experiments.targeted.targets)),
        ),
    ]


def run(cfg: Preset, progress: bool = True) -> pd.DataFrame:
    """Every trial against every precision: one tidy row per trial, precision and kind of poison."""
    entries = grid(cfg, chosen(cfg, progress))
    ensure(grid_cells(entries), progress)

    def row(labels, values):
        out = values["victim"]
        nu, seconds = values.get("poison", (None, None))
        objective = nu.provenance["objective"] if nu is not None else {}
        return {
            **labels,
            **out,
            "success": out["pred"] == labels["adversarial_class"],
            "misclassified": out["pred"] != labels["true_class"],
            "attack_seconds": seconds,
            "objective_initial": objective.get("initial"),
            "objective_final": objective.get("final"),
        }

    return grid_rows(entries, row)


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per precision and kind of poison: successes (target → adversarial class) and misclassifications of the target,
    each as k of n trials, a rate and its Wilson 95% interval."""
    rows = []
    for (prec, kind), cell in runs.groupby(["precision", "poisons"], sort=False):
        row = {"precision": prec, "poisons": kind, "n": len(cell), "victim_acc": cell.acc.mean()}
        for outcome in ("success", "misclassified"):
            r = rate(int(cell[outcome].sum()), len(cell))
            row |= {
                outcome: r["k"],
                f"{outcome}_rate": r["rate"],
                f"{outcome}_low": r["low"],
                f"{outcome}_high": r["high"],
            }
        rows.append(row)
    return pd.DataFrame(rows)


def with_pull(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with column ``pull``: log10 of p(adversarial class | target) over the clean victim's of the same trial
    and precision (0 for the clean victims themselves; probabilities floored at 1e-12)."""
    clean = runs[runs.poisons == "none"].set_index(["target", "seed", "precision"]).p_adv
    return runs.assign(
        pull=[
            math.log10(max(p, 1e-12) / max(clean.loc[(t, s, prec)], 1e-12))
            for t, s, prec, p in zip(runs.target, runs.seed, runs.precision, runs.p_adv)
        ]
    )


def adversarial_shift(runs: pd.DataFrame) -> pd.DataFrame:
    """How far the poisons move the victim toward the adversarial class even where the prediction does not flip: per
    precision and kind of poison, the pull (:func:`with_pull`; mean, std over trials) and how many trials it rose in
    (k of n, Wilson 95%)."""
    poisoned = with_pull(runs)[runs.poisons != "none"]
    out = mean_std(poisoned, "pull", ["precision", "poisons"]).rename(
        columns={"mean": "log10_ratio", "std": "log10_ratio_std"}
    )
    rose = poisoned.groupby(["precision", "poisons"], sort=False).agg(
        rose=("pull", lambda r: int((r > 0).sum())), median_p_adv=("p_adv", "median")
    )
    out = out.join(rose, on=["precision", "poisons"])
    bounds = [rate(k, n) for k, n in zip(out.rose, out.n)]
    return out.assign(rose_low=[b["low"] for b in bounds], rose_high=[b["high"] for b in bounds])


def per_trial(runs: pd.DataFrame, value: str) -> pd.DataFrame:
    """``value`` per precision and kind of poison (rows) and trial (columns ``trial <target>/<seed>``), for
    ``stats.claims``."""
    wide = runs.pivot_table(index=["precision", "poisons"], columns=["target", "seed"], values=value, sort=False)
    wide.columns = [f"trial {t}/{s}" for t, s in wide.columns]
    return wide


def claims(runs: pd.DataFrame) -> pd.DataFrame:
    """Section 4.3's claims, per QAT precision, on both outcomes and on the pull toward the adversarial class, each
    paired by trial (the same target and seed): the attack works in FP (poisoned against clean victims); QAT
    "dramatically reduces the attack efficacy" (the FP victim against the QAT victim of the oblivious poisons); beyond
    the paper, aware poisons beat oblivious ones. Outcomes by the exact McNemar test (``stats.mcnemar``), pulls by
    the paired t-test; each outcome's families are adjusted on their own (``stats.claims``)."""
    qat = [p for p in (precision(s) for s in QAT_SCHEMES) if p in set(runs.precision)]

    def comparisons(works: str, lowers: str, aware: str) -> list[Comparison]:
        return (
            [Comparison("attack works in FP", works, ("FP", "oblivious"), ("FP", "none"))]
            + [
                Comparison("QAT more robust than FP", lowers.format(p), ("FP", "oblivious"), (p, "oblivious"))
                for p in qat
            ]
            + [Comparison("QAA stronger than QOA", aware.format(p), (p, "aware"), (p, "oblivious")) for p in qat]
        )

    rates = comparisons("FP: poisons beat no poisons", "QAT {} lowers the FP rate", "QAT {}: aware beats oblivious")
    pulls = comparisons(
        "FP: poisons raise p(adv)", "QAT {} lowers the FP pull", "QAT {}: aware pulls more than oblivious"
    )
    tables = [
        test_claims(per_trial(runs, o).astype(float), rates, units="trial ", test=mcnemar).assign(outcome=o)
        for o in ("success", "misclassified")
    ]
    tables.append(
        test_claims(per_trial(with_pull(runs), "pull"), pulls, scale=1.0, units="trial ").assign(outcome="pull")
    )
    out = pd.concat(tables, ignore_index=True)
    return out[["outcome", *out.columns[:-1]]]


# -- what the notebook shows --


def _paper_rate(prec: str) -> str:
    """The paper's misclassification rate at precision ``prec``: its FP rate, or its range over QAT precisions."""
    return (
        f"{100 * paper.TARGETED_FP:.1f}%"
        if prec == "FP"
        else "{:.0f}-{:.0f}%".format(*(100 * v for v in paper.TARGETED_QAT_RANGE))
    )


def rates(runs: pd.DataFrame) -> pd.DataFrame:
    """Per precision and kind of poison: successes and misclassifications (k/n, rate, Wilson 95%), the paper's rate
    and the victims' test accuracy."""
    s = summary(runs)
    entry = lambda r, o: (
        f"{r[o]}/{r['n']} = {100 * r[o + '_rate']:.0f}% [{100 * r[o + '_low']:.0f}, {100 * r[o + '_high']:.0f}]"
    )
    return pd.DataFrame(
        {
            "precision": s.precision,
            "poisons": s.poisons,
            "success (→ adversarial class)": [entry(r, "success") for _, r in s.iterrows()],
            "misclassified": [entry(r, "misclassified") for _, r in s.iterrows()],
            "paper (misclassified, oblivious)": [
                _paper_rate(p) if k == "oblivious" else "" for p, k in zip(s.precision, s.poisons)
            ],
            "victim test accuracy (%)": (100 * s.victim_acc).round(2),
        }
    ).set_index(["precision", "poisons"])


def rates_figure(runs: pd.DataFrame) -> plt.Figure:
    """Success and misclassification rates against precision, one colour per kind of poison (Wilson 95%), with the
    paper's misclassification rates."""
    s = summary(runs)
    order = [precision(p) for p in PRECISIONS if precision(p) in set(s.precision)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, outcome, title in zip(
        axes, ("success", "misclassified"), ("target → adversarial class", "target misclassified")
    ):
        for i, (kind, colour) in enumerate(zip(POISONS, ("grey", "tab:blue", "tab:red"))):
            rows = s[s.poisons == kind].set_index("precision").reindex(order).dropna(subset=["n"])
            x = [order.index(p) + 0.12 * (i - 1) for p in rows.index]
            ax.errorbar(
                x,
                100 * rows[f"{outcome}_rate"],
                fmt="o",
                color=colour,
                capsize=3,
                label=kind,
                yerr=[
                    100 * (rows[f"{outcome}_rate"] - rows[f"{outcome}_low"]),
                    100 * (rows[f"{outcome}_high"] - rows[f"{outcome}_rate"]),
                ],
            )
        if outcome == "misclassified":
            ax.plot(0, 100 * paper.TARGETED_FP, "k*", ms=11, label="paper (FP)")
            ax.fill_between(
                [0.6, len(order) - 0.6],
                *(100 * v for v in paper.TARGETED_QAT_RANGE),
                color="k",
                alpha=0.1,
                label="paper (QAT range)",
            )
        ax.set(xticks=range(len(order)), xticklabels=order, title=title, xlabel="victim precision")
    axes[0].set_ylabel("rate over trials (%), Wilson 95%")
    axes[1].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def shift_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The pull toward the adversarial class (:func:`adversarial_shift`): per precision and kind of poison, log10 of
    p(adv) over the clean victim's (mean ± std), the median p(adv) and the trials it rose in (k/n, Wilson 95%)."""
    shift = adversarial_shift(runs)
    return pd.DataFrame(
        {
            "precision": shift.precision,
            "poisons": shift.poisons,
            "log10 p(adv) vs clean victim": [
                f"{m:+.2f} ± {sd:.2f}" for m, sd in zip(shift.log10_ratio, shift.log10_ratio_std.fillna(0))
            ],
            "median p(adv)": shift.median_p_adv.map(lambda v: f"{v:.2g}"),
            "rose in": [
                f"{k}/{n} [{100 * lo:.0f}, {100 * hi:.0f}]%"
                for k, n, lo, hi in zip(shift.rose, shift.n, shift.rose_low, shift.rose_high)
            ],
        }
    ).set_index(["precision", "poisons"])


def per_target(runs: pd.DataFrame) -> pd.DataFrame:
    """Per target (with its true and adversarial class): how many trial seeds succeeded, per precision and kind of
    poison."""
    poisoned = runs[runs.poisons != "none"]
    return poisoned.pivot_table(
        index=["target", "target_index", "true_class", "adversarial_class"],
        columns=["precision", "poisons"],
        values="success",
        aggfunc="sum",
        sort=False,
    ).astype(int)


def crafting_settings(cfg: Preset) -> pd.DataFrame:
    """Gradient matching's settings, the budget and the poisons per trial, the training set, epochs, targets, seeds and
    the QAT victims' bit-widths."""
    tcfg, t = preset(cfg), cfg.experiments.targeted
    return pd.Series(
        {
            "settings": cfg.attacks.get("gradient_matching", {}),
            "eps_d": t.eps_d,
            "poisons per trial": round(t.eps_d * tcfg.train_size) if tcfg.train_size else "ε_d·N",
            "training images": tcfg.train_size or "all",
            "epochs": tcfg.epochs,
            "targets": t.targets,
            "seeds": t.seeds,
            "QAT victims' bits": t.bits,
        },
        name="value",
    ).to_frame()


def crafting(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model the poisons were crafted against (FP, or each QAT scheme for aware poisons): the poisons made, the mean
    cosine loss before and after crafting, and the crafting time (mean and total seconds)."""
    made = runs[runs.poisons != "none"].drop_duplicates(["target", "seed", "poisons", "scheme"])
    made = made[(made.poisons == "aware") | (made.precision == "FP")]
    return (
        made.assign(crafted_against=made.precision.where(made.poisons == "aware", "FP"))
        .groupby("crafted_against", sort=False)
        .agg(
            poisons=("seed", "size"),
            loss_before=("objective_initial", "mean"),
            loss_after=("objective_final", "mean"),
            seconds_mean=("attack_seconds", "mean"),
            seconds_total=("attack_seconds", "sum"),
        )
        .round(3)
    )


def headline(cfg: Preset, runs: pd.DataFrame) -> str:
    """What this shows: the FP rates beside the clean victims' and the paper's, the QAT ranges of oblivious and aware
    poisons, the pull toward the adversarial class, and the claims' verdicts with the smallest effect they could see."""
    tcfg, t, s, shift = preset(cfg), cfg.experiments.targeted, summary(runs), adversarial_shift(runs)
    tested = claims(runs)
    say = lambda outcome, family: tally(
        tested[(tested.outcome == outcome) & (tested.family == family)], "log10" if outcome == "pull" else "points"
    )
    works = tested[tested.family == "attack works in FP"].set_index("outcome")["our run"]
    by = s.set_index(["precision", "poisons"])
    qat, aware = by.xs("oblivious", level="poisons").drop("FP"), by.xs("aware", level="poisons")
    fp, none = by.loc[("FP", "oblivious")], by.loc[("FP", "none")]
    moved = 10 ** shift[shift.poisons == "oblivious"].set_index("precision").log10_ratio  # geometric mean over trials
    best = mcnemar([0] * int(fp.n))["mde"]
    fewer = (
        "" if len(qat) == len(QAT_SCHEMES) else "; the preset's experiments.targeted.bits leave out the paper's others"
    )
    span = lambda v, fmt: fmt.format(v.min()) if v.min() == v.max() else f"{fmt.format(v.min())}-{fmt.format(v.max())}"
    return (
        f"**Targeted attack on {cfg.dataset} ({cfg.model}, {tcfg.train_size or 'all'} training images, "
        f"{tcfg.epochs} epochs, "
        f"{t.targets} targets × {len(t.seeds)} seeds, ε_d = {t.eps_d:g}, "
        f"ε = {cfg.attacks.get('gradient_matching', {}).get('eps', 16 / 255):.3g}):** "
        "in full precision gradient matching puts the target in the "
        f"adversarial class in {100 * fp.success_rate:.0f}% of trials "
        f"[{100 * fp.success_low:.0f}, {100 * fp.success_high:.0f}] "
        f"(clean victims: {100 * none.success_rate:.0f}%) "
        f"and gets it misclassified in {100 * fp.misclassified_rate:.0f}% "
        f"(the paper: {100 * paper.TARGETED_FP:.1f}% misclassified); against the clean victims of the same trials, "
        f"'the attack works in FP' {works['success']} on success, {works['misclassified']} on misclassification and "
        f"{works['pull']} on the pull. Under QAT ({', '.join(qat.index)}{fewer}) the oblivious poisons succeed in "
        f"{span(100 * qat.success_rate, '{:.0f}')}% of trials "
        f"(the paper: {100 * paper.TARGETED_QAT_RANGE[0]:.0f}-{100 * paper.TARGETED_QAT_RANGE[1]:.0f}% "
        "misclassified at 1-8 bits), "
        f"quantization-aware poisons in {span(100 * aware.success_rate, '{:.0f}')}%. "
        f"Paired by trial (exact McNemar, Benjamini-Hochberg within each family): 'QAT lowers the FP success rate' "
        f"{say('success', 'QAT more robust than FP')}; "
        f"'aware beats oblivious' {say('success', 'QAA stronger than QOA')}. "
        f"Below the flip, the oblivious poisons make the adversarial class {moved['FP']:.3g}× likelier "
        f"for the FP victim (geometric mean over trials) and {span(moved.drop('FP'), '{:.3g}')}× "
        f"under QAT: 'QAT lowers the FP pull' {say('pull', 'QAT more robust than FP')}, "
        f"'aware pulls more than oblivious' {say('pull', 'QAA stronger than QOA')}. "
        + (
            f"With {int(fp.n)} trials no rate claim can be decided: "
            "the exact test needs 6 trials that differ, all one way."
            if math.isnan(best)
            else f"With {int(fp.n)} trials the exact test detects (power 0.8) a difference in rates "
            f"of {100 * best:.0f} points or more, and only if no trial goes against it."
        )
    )
