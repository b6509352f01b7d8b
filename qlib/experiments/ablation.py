"""Notebook 03: GC-Q's ablation (Table 4): PAQ and the quantized gradient ĝ, each switched on and off.

Cells: per seed, scheme of :func:`schemes` (weight-only QAT: the paper's 1 bit BNN and 4 and 8 bits int,
``paper.W_SCHEMES``, then a second block with LSQ's learned step at ``experiments.ablation.lsq_bits``,
``LSQ_SCHEMES``, where B clips weights and the ĝ switch is testable) and switches of
``SWITCHES`` (PAQ, ĝ), the poison :func:`attack_of` names and the clean and poisoned QAT accuracies. Shared poisons
(GC's, GC-Q's) are the same cells as in notebooks 01-02. The paper's numbers: ``paper.TABLE4``. Claim: at each
bit-width, both switches on beat each of the other three cells; two cells that share their poisons cannot be told apart
(``SAME_POISON``). The notebook shows the preset, Table 4 (table and figure), its claims and a headline.
"""

import pandas as pd
import seaborn as sns

from .. import paper
from ..cells import accuracy, poison
from ..presets import Preset
from ..quant import QuantScheme, parse_scheme
from ..stats import Comparison, points, summarise, tally
from ..stats import claims as test_claims
from . import ensure, grid_cells, grid_rows

LSQ_SCHEMES = {4: parse_scheme("4W", "lsq"), 8: parse_scheme("8W", "lsq")}  # int with a learned step: B ≢ 1, so ĝ ≠ ∇
QUANTIZERS = {"bnn": "BNN", "int": "int", "lsq": "LSQ"}  # how tables and figures name the schemes' methods
SWITCHES = [(False, False), (True, False), (False, True), (True, True)]  # (PAQ, ĝ), Table 4's row order
SAME_POISON = "untestable here: same poison (B ≡ 1)"
LABELS = {(False, False): "neither", (True, False): "PAQ only", (False, True): "ĝ only", (True, True): "PAQ + ĝ"}


def ghat_is_identity(scheme: QuantScheme) -> bool:
    """Is ĝ = B ⊙ ∇ the plain gradient for this scheme? Yes for int weights with full-precision activations:
    the max-abs scale keeps every w/s inside the grid, so B ≡ 1, and s is a constant. Not for LSQ, whose step
    (set on ŵ by PTQ's MSE rule, a constant in GC-Q) clips the largest weights, where B = 0; not for BNN, whose
    F = α·sign(w) passes α·1_[−1,1](w) ⊙ ∇ back; nor for quantized activations."""
    return scheme.method == "int" and scheme.a_bits is None


def attack_of(scheme: QuantScheme, paq: bool, ghat: bool) -> tuple[str, dict, str]:
    """How Table 4's cell (``paq``, ``ghat``) is computed: (attack, switches, label).

    Both switches off is GC, Eq. (4), on the same target, so that cell reuses GC's poison (Tables 1 and 3);
    both on is Table 3's GC-Q, Eq. (5). Where ĝ is the identity (:func:`ghat_is_identity`) the ĝ switch changes
    nothing, so "PAQ only" is GC-Q and "ĝ only" is GC, and those cells reuse their poisons.
    """
    if ghat != paq and ghat_is_identity(scheme):
        name, switches, label = attack_of(scheme, paq, paq)
        return name, switches, f"{label}; ĝ = ∇ here (B ≡ 1)"
    if not (paq or ghat):
        return "gc", {}, "GC (Eq. (4))"
    if paq and ghat:
        return "gc_q", {}, "GC-Q (Eq. (5))"
    return "gc_q", {"paq": paq, "quantized_grad": ghat}, "PAQ only" if paq else "ĝ only"


def schemes(cfg: Preset) -> list[QuantScheme]:
    """Table 4's rows: the paper's ``paper.W_SCHEMES``, then LSQ at each of ``experiments.ablation.lsq_bits``."""
    return paper.W_SCHEMES + [LSQ_SCHEMES[b] for b in cfg.experiments.ablation.lsq_bits]


def grid(cfg: Preset) -> list:
    entries = []
    for seed in cfg.seeds:
        for scheme in schemes(cfg):
            for paq, ghat in SWITCHES:
                name, switches, computed_as = attack_of(scheme, paq, ghat)
                nu = poison(cfg, name, seed, cfg.eps_d, scheme, **switches)
                entries.append(
                    (
                        {
                            "seed": seed,
                            "method": scheme.method,
                            "bits": scheme.w_bits,
                            "paq": paq,
                            "ghat": ghat,
                            "computed_as": computed_as,
                        },
                        {
                            "poison": nu,
                            "clean": accuracy(cfg, seed, "qat", scheme),
                            "poisoned": accuracy(cfg, seed, "qat", scheme, nu),
                        },
                    )
                )
    return entries


def cells(cfg: Preset) -> list:
    return grid_cells(grid(cfg))


def run(cfg: Preset, progress: bool = True) -> pd.DataFrame:
    """Table 4's runs: one tidy row per seed, method, bit-width and (PAQ, ĝ), with the poison's digest."""
    entries = grid(cfg)
    ensure(grid_cells(entries), progress)

    def row(labels, values):
        (nu, seconds), clean, acc = values["poison"], values["clean"]["acc"], values["poisoned"]["acc"]
        return {
            **labels,
            "clean_acc": clean,
            "acc": acc,
            "drop": acc - clean,
            "attack_seconds": seconds,
            "poison": nu.digest()[:12],
        }

    return grid_rows(entries, row)


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per method, bit-width and (PAQ, ĝ): our drop (mean, std, per seed), how it was computed, its poisons
    (one digest per seed), the paper's at the same bits and switches (its quantizer is int's, or BNN at 1 bit)."""
    keys = ["method", "bits", "paq", "ghat"]
    out = summarise(
        runs,
        keys,
        paper=paper.TABLE4,
        paper_key=lambda row: (row["bits"], row["paq"], row["ghat"]),
        first=("computed_as",),
    )
    return out.join(runs.sort_values("seed").groupby(keys)["poison"].agg(" ".join).rename("poisons"), on=keys)


def claims(summary: pd.DataFrame) -> pd.DataFrame:
    """ "PAQ and ĝ are both needed": at each bit-width, both switches on beats each of the other three cells, paired
    by seed (``stats.claims``). A comparison of the same two sets of poisons as an earlier row is left out; one of a
    set with itself gets the verdict ``SAME_POISON`` and no p (it is no test, so it stays out of the family's
    Benjamini-Hochberg adjustment)."""
    by = summary.set_index(["method", "bits", "paq", "ghat"])
    comparisons, seen = [], set()
    for method, bits in dict.fromkeys(zip(summary.method, summary.bits)):
        for paq, ghat in SWITCHES[:3]:
            cell, both = (method, bits, paq, ghat), (method, bits, True, True)
            pair = (by.loc[cell, "poisons"], by.loc[both, "poisons"])
            if pair not in seen:
                seen.add(pair)
                comparisons.append(
                    Comparison(
                        "PAQ and ĝ both needed",
                        f"{weights(bits, method)}: PAQ + ĝ stronger than {LABELS[(paq, ghat)]}",
                        cell,
                        both,
                    )
                )
    same = [by.loc[c.better, "poisons"] == by.loc[c.worse, "poisons"] for c in comparisons]
    paper_key = lambda key: key[1:]  # the paper's (bits, PAQ, ĝ)
    tested = test_claims(by, [c for c, s in zip(comparisons, same) if not s], paper.TABLE4, paper_key)
    untested = test_claims(by, [c for c, s in zip(comparisons, same) if s], paper.TABLE4, paper_key).assign(
        **{k: float("nan") for k in ("low", "high", "mde", "p", "q")}, **{"our run": SAME_POISON, "agrees": None}
    )
    out = pd.concat([t for t in (tested, untested) if len(t)], ignore_index=True)
    return out.set_index("claim", drop=False).loc[[c.text for c in comparisons]].reset_index(drop=True)


# -- what the notebook shows --


def weights(bits: int, method: str) -> str:
    """A scheme's label in Table 4: ``4-bit LSQ``."""
    return f"{bits}-bit {QUANTIZERS[method]}"


def table4(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 4: per weight quantizer (bits and method) and (PAQ, ĝ), how the cell was computed, our drop (mean ± std,
    per seed), the paper's at the same bits and switches."""
    s = summary(runs)
    seed_cols = [c for c in s.columns if c.startswith("seed ")]
    mark = lambda on: "✓" if on else "✗"
    return pd.DataFrame(
        {
            "computed as": s.computed_as,
            "ours: drop (mean ± std, points)": [
                f"{100 * m:+.2f} ± {100 * sd:.2f}" for m, sd in zip(s["mean"], s["std"])
            ],
            **{c: s[c].map(points) for c in seed_cols},
            "paper's drop (CIFAR-10)": s.paper.map(points),
        }
    ).set_index(
        [
            pd.Series(map(weights, s.bits, s.method), name="weights"),
            s.paq.map(mark).rename("PAQ"),
            s.ghat.map(mark).rename("ĝ"),
        ]
    )


def figure4(runs: pd.DataFrame) -> sns.FacetGrid:
    """Table 4 as bars: the drop per weight quantizer (bits and method) and (PAQ, ĝ), ours (mean ± std over seeds)
    beside the paper's (int at 4 and 8 bits: no bars at LSQ's)."""
    label = {**LABELS, (False, False): "GC"}
    both = pd.concat(
        [
            runs.assign(source="ours (mean ± std over seeds)", drop=100 * runs["drop"]),
            pd.DataFrame(
                [
                    {
                        "bits": b,
                        "method": "bnn" if b == 1 else "int",
                        "paq": p,
                        "ghat": g,
                        "drop": 100 * v,
                        "source": "paper (CIFAR-10, one run)",
                    }
                    for (b, p, g), v in paper.TABLE4.items()
                ]
            ),
        ],
        ignore_index=True,
    )
    both["combination"] = [label[(p, g)] for p, g in zip(both.paq, both.ghat)]
    both["weights"] = list(map(weights, both.bits, both.method))
    grid = sns.catplot(
        data=both,
        x="weights",
        y="drop",
        hue="combination",
        col="source",
        kind="bar",
        errorbar="sd",
        order=[
            weights(s.w_bits, s.method)
            for s in paper.W_SCHEMES + list(LSQ_SCHEMES.values())
            if ((runs.bits == s.w_bits) & (runs.method == s.method)).any()
        ],
        hue_order=[label[k] for k in SWITCHES],
        height=3.2,
        aspect=1.5,
        sharey=False,
    )
    grid.set(
        xlabel="weights (QAT, weights only; int: max-abs scale, LSQ: learned step)", ylabel="accuracy drop (points)"
    )
    grid.tick_params(axis="x", labelrotation=30)
    for ax in grid.axes.flat:
        ax.axhline(0, c="grey", lw=0.8)
    return grid


def headline(cfg: Preset, runs: pd.DataFrame) -> str:
    """What this shows: the claims' verdicts, the change GC → GC-Q makes at each bit-width and, at 1 bit, the change
    each switch alone makes, beside the paper's."""
    s = summary(runs)
    tested = claims(s)
    same = tested["our run"] == SAME_POISON
    ours, bits = s[s.method != "lsq"].set_index(["bits", "paq", "ghat"])["mean"], s[s.method != "lsq"].bits.unique()
    lsq = s[s.method == "lsq"].set_index(["bits", "paq", "ghat"])["mean"]
    change = lambda drops, b, paq, ghat: points(drops[(b, paq, ghat)] - drops[(b, False, False)])  # against GC's drop
    return (
        f"**Table 4 on {cfg.dataset} ({cfg.model}, {len(cfg.seeds)} seed(s), ε_d = {cfg.eps_d}):** of {len(tested)} "
        f"comparisons of PAQ + ĝ against a cell with fewer switches, {same.sum()} compare two cells that share one "
        f"poison; of the others, paired by seed, {tally(tested[~same])}"
        + (" (one seed: no test)" if len(cfg.seeds) < 2 else "")
        + f"; {tested.agrees.sum()} agree with the paper. GC → GC-Q (both switches) changes the drop by "
        + ", ".join(f"{change(ours, b, True, True)} at {b} bit" for b in bits)
        + " points (the paper: "
        + ", ".join(change(paper.TABLE4, b, True, True) for b in bits)
        + "). "
        f"At 1 bit, PAQ alone changes GC's drop by {change(ours, 1, True, False)} and ĝ alone by "
        f"{change(ours, 1, False, True)} points (the paper: {change(paper.TABLE4, 1, True, False)} and "
        f"{change(paper.TABLE4, 1, False, True)}). "
        "The paper credits most of GC-Q's gain to ĝ at every bit-width; with max-abs int weights ĝ is the plain "
        "gradient (B ≡ 1), so at 4 and 8 bits only PAQ can differ from GC in the int rows. With LSQ's step, which "
        "clips weights, ĝ alone changes GC's drop by "
        + ", ".join(f"{change(lsq, b, False, True)} at {b} bit" for b in lsq.index.unique("bits"))
        + " and PAQ alone by "
        + ", ".join(f"{change(lsq, b, True, False)} at {b} bit" for b in lsq.index.unique("bits"))
        + " points (the paper's int: ĝ alone "
        + ", ".join(f"{change(paper.TABLE4, b, False, True)} at {b} bit" for b in lsq.index.unique("bits"))
        + ", PAQ alone "
        + ", ".join(f"{change(paper.TABLE4, b, True, False)} at {b} bit" for b in lsq.index.unique("bits"))
        + ")."
    )
