"""Notebook 05: the targeted attack of Section 4.3, gradient matching against FP and QAT at 1, 3, 4, 5 and 8 bits.

A *trial* is one target and one seed s. The attacker trains a clean surrogate from seed s and crafts
``targeted_eps_d`` poisons against it: in full precision (quantization-oblivious poisons, used against every
precision), or through the clean QAT model of each scheme (quantization-aware, used against that scheme). The
victim trains from scratch on μ with the poisons in place, from seed s + ``cells.VICTIM_SEED`` (an initialisation
and batch order the attacker does not know, Witches' Brew's validation). The attack succeeds when the victim puts
the target in the adversarial class; the paper's looser criterion is any misclassification. Clean victims of the
same seeds give the rates without poisons.

Cells: ``qlib.cells.targets`` (the targets, chosen with the FP surrogate of the first trial seed), then per trial,
precision of ``PRECISIONS`` and kind of poison of ``POISONS``, the poison (``qlib.cells.poison``, gradient matching)
and the victim (``qlib.cells.victim``); aware poisons skip FP. All on the preset of :func:`preset`. The paper's
numbers: ``paper.TARGETED_FP``, ``paper.TARGETED_QAT_RANGE`` (misclassification). Claims, on rates
(``stats.verdict_rates``) and on the pull toward the adversarial class (``stats.verdict_means``): the attack works
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
from ..stats import mean_std, rate, verdict_means, verdict_rates
from . import ensure, grid_cells, grid_rows

QAT_SCHEMES = [parse_scheme("1W", "bnn"), parse_scheme("3W"), parse_scheme("4W"), parse_scheme("5W"), parse_scheme("8W")]
PRECISIONS = [FP] + QAT_SCHEMES  # the paper's: full precision and QAT at 1, 3, 4, 5, 8 bits (weights)
POISONS = ("none", "oblivious", "aware")


def precision(scheme: QuantScheme) -> str:
    return "FP" if scheme.is_fp else f"{scheme.w_bits}-bit"


def preset(cfg: Preset) -> Preset:
    """``cfg`` with the targeted experiment's training-set size and epochs (``targeted_train_size``, ``targeted_epochs``),
    its trial seeds checked: a trial seed may not be another trial's victim seed."""
    if clash := sorted(set(cfg.targeted_seeds) & {s + VICTIM_SEED for s in cfg.targeted_seeds}):
        raise ParameterError(f"targeted_seeds {cfg.targeted_seeds}: seed(s) {clash} would train a surrogate that is also "
                             f"another trial's victim (victims use seed + {VICTIM_SEED}); use distinct seeds below {VICTIM_SEED}")
    return replace(cfg, train_size=cfg.targeted_train_size or cfg.train_size, epochs=cfg.targeted_epochs or cfg.epochs)


def chosen(cfg: Preset, progress: bool = True) -> list[dict]:
    """The targets (computed here, serially, if the cache lacks them: one FP surrogate and one pass over the test set)."""
    cell = targets(preset(cfg))
    ensure(cfg, [cell], progress)
    return cell.value()["targets"]


def grid(cfg: Preset, chosen_targets: list[dict]) -> list:
    tcfg = preset(cfg)
    entries = []
    for t in chosen_targets:
        for seed in tcfg.targeted_seeds:
            for scheme in PRECISIONS:
                for kind in POISONS:
                    if kind == "aware" and scheme.is_fp:
                        continue
                    nu = None if kind == "none" else poison(
                        tcfg, "gradient_matching", seed, tcfg.targeted_eps_d, FP if kind == "oblivious" else scheme,
                        target_index=t["target_index"], adversarial_class=t["adversarial_class"], curve=False)
                    cells = {"victim": victim(tcfg, seed, scheme, t["target_index"], t["adversarial_class"], nu)}
                    entries.append(({**t, "seed": seed, "precision": precision(scheme), "scheme": scheme.name, "poisons": kind},
                                    cells | ({"poison": nu} if nu is not None else {})))
    return entries


def cells(cfg: Preset, chosen_targets: list[dict] | None = None) -> list:
    """Every cell of the trials; the targets are chosen first (:func:`chosen`) unless given."""
    return [targets(preset(cfg)), *grid_cells(grid(cfg, chosen(cfg) if chosen_targets is None else chosen_targets))]


def run(cfg: Preset, progress: bool = True) -> pd.DataFrame:
    """Every trial against every precision: one tidy row per trial, precision and kind of poison."""
    entries = grid(cfg, chosen(cfg, progress))
    ensure(cfg, grid_cells(entries), progress)

    def row(labels, values):
        out = values["victim"]
        nu, seconds = values.get("poison", (None, None))
        objective = nu.provenance["objective"] if nu is not None else {}
        return {**labels, **out, "success": out["pred"] == labels["adversarial_class"], "misclassified": out["pred"] != labels["true_class"],
                "attack_seconds": seconds, "objective_initial": objective.get("initial"), "objective_final": objective.get("final")}

    return grid_rows(entries, row)


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per precision and kind of poison: successes (target → adversarial class) and misclassifications of the target,
    each as k of n trials, a rate and its Wilson 95% interval."""
    rows = []
    for (prec, kind), cell in runs.groupby(["precision", "poisons"], sort=False):
        row = {"precision": prec, "poisons": kind, "n": len(cell), "victim_acc": cell.acc.mean()}
        for outcome in ("success", "misclassified"):
            r = rate(int(cell[outcome].sum()), len(cell))
            row |= {outcome: r["k"], f"{outcome}_rate": r["rate"], f"{outcome}_low": r["low"], f"{outcome}_high": r["high"]}
        rows.append(row)
    return pd.DataFrame(rows)


def adversarial_shift(runs: pd.DataFrame) -> pd.DataFrame:
    """How far the poisons move the victim toward the adversarial class even where the prediction does not flip: per
    precision and kind of poison, log10 of p(adversarial class | target) over the clean victim's of the same trial and
    precision (mean, std over trials) and how many trials it rose in (k of n, Wilson 95%)."""
    clean = runs[runs.poisons == "none"].set_index(["target", "seed", "precision"]).p_adv
    poisoned = runs[runs.poisons != "none"]
    ratio = [math.log10(max(p, 1e-12) / max(clean.loc[(t, s, prec)], 1e-12))
             for t, s, prec, p in zip(poisoned.target, poisoned.seed, poisoned.precision, poisoned.p_adv)]
    poisoned = poisoned.assign(log10_ratio=ratio)
    out = mean_std(poisoned, "log10_ratio", ["precision", "poisons"]).rename(columns={"mean": "log10_ratio", "std": "log10_ratio_std"})
    rose = poisoned.groupby(["precision", "poisons"], sort=False).agg(rose=("log10_ratio", lambda r: int((r > 0).sum())),
                                                                       median_p_adv=("p_adv", "median"))
    out = out.join(rose, on=["precision", "poisons"])
    bounds = [rate(k, n) for k, n in zip(out.rose, out.n)]
    return out.assign(rose_low=[b["low"] for b in bounds], rose_high=[b["high"] for b in bounds])


def claims(summary: pd.DataFrame, shift: pd.DataFrame) -> pd.DataFrame:
    """Section 4.3's claims, per QAT precision, on both outcomes and on the pull toward the adversarial class:
    the attack works in FP; QAT "dramatically reduces the attack efficacy"; beyond the paper, aware poisons beat
    oblivious ones. Rates by ``stats.verdict_rates``, pulls (mean log10 ratios over trials) by ``stats.verdict_means``."""
    cell = summary.set_index(["precision", "poisons"]).loc
    pull = shift.set_index(["precision", "poisons"]).rename(columns={"log10_ratio": "mean", "log10_ratio_std": "std"}).loc
    qat = [precision(s) for s in QAT_SCHEMES]
    as_rate = lambda r, o: {"k": r[o], "n": r["n"], "rate": r[f"{o}_rate"], "low": r[f"{o}_low"], "high": r[f"{o}_high"]}
    pct = lambda r: f"{100 * r['rate']:.0f}% ({int(r['k'])}/{int(r['n'])})"
    rows = []
    for outcome in ("success", "misclassified"):
        pairs = [("FP: poisons beat no poisons", ("FP", "oblivious"), ("FP", "none"))]
        pairs += [(f"QAT {p} lowers the FP rate", ("FP", "oblivious"), (p, "oblivious")) for p in qat]
        pairs += [(f"QAT {p}: aware beats oblivious", (p, "aware"), (p, "oblivious")) for p in qat]
        for text, better, worse in pairs:
            b, w = as_rate(cell[better], outcome), as_rate(cell[worse], outcome)
            rows.append({"outcome": outcome, "claim": text, "ours": f"{pct(b)} vs {pct(w)}", "our run": verdict_rates(b, w)})
    fp = pull[("FP", "oblivious")]
    rose = {"low": fp["rose_low"], "high": fp["rose_high"]}
    rows.append({"outcome": "pull", "claim": "FP: poisons raise p(adv)", "ours": f"rose in {int(fp['rose'])}/{int(fp['n'])}",
                 "our run": verdict_rates(rose, {"low": 0.5, "high": 0.5})})
    pairs = [(f"QAT {p} lowers the FP pull", fp, pull[(p, "oblivious")]) for p in qat]
    pairs += [(f"QAT {p}: aware pulls more than oblivious", pull[(p, "aware")], pull[(p, "oblivious")]) for p in qat]
    rows += [{"outcome": "pull", "claim": text, "our run": verdict_means(b, w),
              "ours": f"{b['mean']:+.2f} vs {w['mean']:+.2f} (±{max(b['std'], w['std']):.2f})"} for text, b, w in pairs]
    return pd.DataFrame(rows)


# -- what the notebook shows --


def _paper_rate(prec: str) -> str:
    """The paper's misclassification rate at precision ``prec``: its FP rate, or its range over QAT precisions."""
    return f"{100 * paper.TARGETED_FP:.1f}%" if prec == "FP" else "{:.0f}-{:.0f}%".format(*(100 * v for v in paper.TARGETED_QAT_RANGE))


def rates(runs: pd.DataFrame) -> pd.DataFrame:
    """Per precision and kind of poison: successes and misclassifications (k/n, rate, Wilson 95%), the paper's rate
    and the victims' test accuracy."""
    s = summary(runs)
    cell = lambda r, o: f"{r[o]}/{r['n']} = {100 * r[o + '_rate']:.0f}% [{100 * r[o + '_low']:.0f}, {100 * r[o + '_high']:.0f}]"
    return pd.DataFrame({
        "precision": s.precision, "poisons": s.poisons,
        "success (→ adversarial class)": [cell(r, "success") for _, r in s.iterrows()],
        "misclassified": [cell(r, "misclassified") for _, r in s.iterrows()],
        "paper (misclassified, oblivious)": [_paper_rate(p) if k == "oblivious" else "" for p, k in zip(s.precision, s.poisons)],
        "victim test accuracy (%)": (100 * s.victim_acc).round(2),
    }).set_index(["precision", "poisons"])


def rates_figure(runs: pd.DataFrame) -> plt.Figure:
    """Success and misclassification rates against precision, one colour per kind of poison (Wilson 95%), with the
    paper's misclassification rates."""
    s = summary(runs)
    order = [precision(p) for p in PRECISIONS]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, outcome, title in zip(axes, ("success", "misclassified"), ("target → adversarial class", "target misclassified")):
        for i, (kind, colour) in enumerate(zip(POISONS, ("grey", "tab:blue", "tab:red"))):
            cell = s[s.poisons == kind].set_index("precision").reindex(order).dropna(subset=["n"])
            x = [order.index(p) + 0.12 * (i - 1) for p in cell.index]
            ax.errorbar(x, 100 * cell[f"{outcome}_rate"], fmt="o", color=colour, capsize=3, label=kind,
                        yerr=[100 * (cell[f"{outcome}_rate"] - cell[f"{outcome}_low"]), 100 * (cell[f"{outcome}_high"] - cell[f"{outcome}_rate"])])
        if outcome == "misclassified":
            ax.plot(0, 100 * paper.TARGETED_FP, "k*", ms=11, label="paper (FP)")
            ax.fill_between([0.6, len(order) - 0.6], *(100 * v for v in paper.TARGETED_QAT_RANGE), color="k", alpha=0.1,
                            label="paper (QAT range)")
        ax.set(xticks=range(len(order)), xticklabels=order, title=title, xlabel="victim precision")
    axes[0].set_ylabel("rate over trials (%), Wilson 95%")
    axes[1].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def shift_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The pull toward the adversarial class (:func:`adversarial_shift`): per precision and kind of poison, log10 of
    p(adv) over the clean victim's (mean ± std), the median p(adv) and the trials it rose in (k/n, Wilson 95%)."""
    shift = adversarial_shift(runs)
    return pd.DataFrame({
        "precision": shift.precision, "poisons": shift.poisons,
        "log10 p(adv) vs clean victim": [f"{m:+.2f} ± {sd:.2f}" for m, sd in zip(shift.log10_ratio, shift.log10_ratio_std.fillna(0))],
        "median p(adv)": shift.median_p_adv.map(lambda v: f"{v:.2g}"),
        "rose in": [f"{k}/{n} [{100 * lo:.0f}, {100 * hi:.0f}]%" for k, n, lo, hi in zip(shift.rose, shift.n, shift.rose_low, shift.rose_high)],
    }).set_index(["precision", "poisons"])


def per_target(runs: pd.DataFrame) -> pd.DataFrame:
    """Per target (with its true and adversarial class): how many trial seeds succeeded, per precision and kind of poison."""
    poisoned = runs[runs.poisons != "none"]
    return poisoned.pivot_table(index=["target", "target_index", "true_class", "adversarial_class"], columns=["precision", "poisons"],
                                values="success", aggfunc="sum", sort=False).astype(int)


def crafting_settings(cfg: Preset) -> pd.DataFrame:
    """Gradient matching's settings, the budget and the poisons per trial, the training set, epochs, targets and seeds."""
    tcfg = preset(cfg)
    return pd.Series({"settings": cfg.attacks.get("gradient_matching", {}), "eps_d": tcfg.targeted_eps_d,
                      "poisons per trial": round(tcfg.targeted_eps_d * tcfg.train_size) if tcfg.train_size else "ε_d·N",
                      "training images": tcfg.train_size or "all", "epochs": tcfg.epochs, "targets": cfg.targets,
                      "seeds": cfg.targeted_seeds}, name="value").to_frame()


def crafting(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model the poisons were crafted against (FP, or each QAT scheme for aware poisons): the poisons made, the mean
    cosine loss before and after crafting, and the crafting time (mean and total seconds)."""
    made = runs[runs.poisons != "none"].drop_duplicates(["target", "seed", "poisons", "scheme"])
    made = made[(made.poisons == "aware") | (made.precision == "FP")]
    return made.assign(crafted_against=made.precision.where(made.poisons == "aware", "FP")).groupby("crafted_against", sort=False).agg(
        poisons=("seed", "size"), loss_before=("objective_initial", "mean"), loss_after=("objective_final", "mean"),
        seconds_mean=("attack_seconds", "mean"), seconds_total=("attack_seconds", "sum")).round(3)


def _tally(tested: pd.DataFrame, outcome: str, aware: bool) -> str:
    """How many of ``outcome``'s claims get each verdict: those that QAT lowers the FP value or, with ``aware``, those
    that aware poisons beat oblivious ones."""
    rows = tested[(tested.outcome == outcome) & tested.claim.str.contains("aware" if aware else "lowers")]
    return ", ".join(f"{n} {v}" for v, n in rows["our run"].value_counts().items()) + f" (of {len(rows)})"


def headline(cfg: Preset, runs: pd.DataFrame) -> str:
    """What this shows: the FP rates beside the clean victims' and the paper's, the QAT ranges of oblivious and aware
    poisons, the pull toward the adversarial class, and the claims' verdicts."""
    tcfg, s, shift = preset(cfg), summary(runs), adversarial_shift(runs)
    tested = claims(s, shift)
    cell = s.set_index(["precision", "poisons"])
    qat, aware = cell.xs("oblivious", level="poisons").drop("FP"), cell.xs("aware", level="poisons")
    fp, none = cell.loc[("FP", "oblivious")], cell.loc[("FP", "none")]
    moved = 10 ** shift[shift.poisons == "oblivious"].set_index("precision").log10_ratio  # geometric mean over trials
    return (f"**Targeted attack on {cfg.dataset} ({cfg.model}, {tcfg.train_size or 'all'} training images, {tcfg.epochs} epochs, "
            f"{cfg.targets} targets × {len(cfg.targeted_seeds)} seeds, ε_d = {tcfg.targeted_eps_d:g}, "
            f"ε = {cfg.attacks.get('gradient_matching', {}).get('eps', 16 / 255):.3g}):** in full precision gradient matching puts the target in the "
            f"adversarial class in {100 * fp.success_rate:.0f}% of trials [{100 * fp.success_low:.0f}, {100 * fp.success_high:.0f}] "
            f"(clean victims: {100 * none.success_rate:.0f}%) and gets it misclassified in {100 * fp.misclassified_rate:.0f}% "
            f"(the paper: {100 * paper.TARGETED_FP:.1f}% misclassified). Under QAT the oblivious poisons succeed in "
            f"{100 * qat.success_rate.min():.0f}-{100 * qat.success_rate.max():.0f}% of trials across 1-8 bits "
            f"(the paper: {100 * paper.TARGETED_QAT_RANGE[0]:.0f}-{100 * paper.TARGETED_QAT_RANGE[1]:.0f}% misclassified), "
            f"quantization-aware poisons in {100 * aware.success_rate.min():.0f}-{100 * aware.success_rate.max():.0f}%. "
            f"'QAT lowers the FP success rate': {_tally(tested, 'success', False)}; "
            f"'aware beats oblivious': {_tally(tested, 'success', True)}. "
            f"Below the flip, the oblivious poisons make the adversarial class {moved['FP']:.3g}× likelier "
            f"for the FP victim (geometric mean over trials) and {moved.drop('FP').min():.3g}-{moved.drop('FP').max():.3g}× "
            f"under QAT: 'QAT lowers the FP pull' {_tally(tested, 'pull', False)}, "
            f"'aware pulls more than oblivious' {_tally(tested, 'pull', True)}. "
            f"With {int(fp.n)} trials per cell the intervals are wide: read the verdicts, not the point estimates.")
