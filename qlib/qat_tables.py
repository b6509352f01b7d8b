"""Tables 3 and 4 (QAT): the quantization-oblivious and quantization-aware attacks against QAT, and GC-Q's
ablation, as tidy summaries beside the paper's numbers with their claims tested (verdicts as in
:mod:`qlib.tables`).
"""

import pandas as pd
from tqdm import tqdm

from . import paper
from .presets import Preset
from .quant import QuantScheme, parse_scheme
from .study import FP, QAT_SCHEMES, QUANTIZATION_AWARE, attack_drops, attack_poison, load_data, retrain_and_evaluate
from .tables import QOA, claim, drop_summary

QAT_CELLS = [("fp", FP)] + [("qat", s) for s in QAT_SCHEMES]
ROWS = ["fp"] + [s.name for s in QAT_SCHEMES]  # Table 3's rows, in the paper's order


def table3(cfg: Preset, progress: bool = True) -> pd.DataFrame:
    """Table 3's runs: QOA poisons (made once in FP, reused in every row) and QAA poisons (made per scheme),
    each retrained by QAT under every scheme of the paper, plus the FP row, at ε_d = ``cfg.eps_d``."""
    df = attack_drops(cfg, QOA + list(QUANTIZATION_AWARE), [cfg.eps_d], QAT_CELLS, progress)
    return df.assign(task=[name.split()[0] for name in df.scheme])


def table3_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per scheme and attack: clean accuracy, our drop (mean, std, per seed) and the paper's."""
    summary = drop_summary(df, ["scheme", "attack"])
    firsts = df.groupby(["scheme", "attack"], sort=False).agg(task=("task", "first"), method=("method", "first"),
                                                               clean_acc=("clean_acc", "mean"))
    summary = summary.join(firsts, on=["scheme", "attack"])
    return summary.assign(paper=[paper.TABLE3.get(k) for k in zip(summary.task, summary.method, summary.attack)])


def extra_drop(summary: pd.DataFrame) -> pd.DataFrame:
    """The paper's ↓ column: how much further each QAA lowers accuracy than its QOA counterpart, per scheme
    (negative = the QAA is stronger), ours (difference of the seed means) and the paper's as printed."""
    rows = []
    for scheme, group in summary.groupby("scheme", sort=False):
        by = group.set_index("attack")
        for aware, oblivious in QUANTIZATION_AWARE.items():
            if aware in by.index:
                rows.append({"scheme": scheme, "attack": aware, "ours": by.loc[aware, "mean"] - by.loc[oblivious, "mean"],
                             "paper": paper.TABLE3_EXTRA.get((by.loc[aware, "task"], by.loc[aware, "method"], aware))})
    return pd.DataFrame(rows)


# Pairs (more robust, less robust) that Section 4.2's claims compare, by scheme name.
LOWER_BITS = [("1W bnn", "4W"), ("1W bnn++", "4W"), ("4W", "8W"), ("1W1A bnn", "4W4A"), ("1W1A bnn++", "4W4A"), ("4W4A", "8W8A")]
WA_VS_W = [("1W1A bnn", "1W bnn"), ("1W1A bnn++", "1W bnn++"), ("4W4A", "4W"), ("8W8A", "8W")]


def table3_claims(summary: pd.DataFrame) -> pd.DataFrame:
    """Section 4.2's claims on Table 3, one row per comparison, grouped by ``family``:

    - QAT more robust than FP (each scheme, each QOA);
    - lower bits more robust (1 < 4 < 8 bits, W and WA, each QOA);
    - WA more robust than W (each bit-width and method, each QOA);
    - QAA stronger than QOA (each scheme, GC-Q vs GC and TGDA-Q vs TGDA).
    """
    row = summary.set_index(["scheme", "attack"]).loc
    key = lambda scheme, attack: (*_task_method(summary, scheme), attack)
    rows = []

    def add(family, text, better, worse):
        rows.append({"family": family, **claim(text, row[better], row[worse], paper.TABLE3, key(*better), key(*worse))})

    for attack in QOA:
        for scheme in ROWS[1:]:
            add("QAT more robust than FP", f"{attack}: QAT {scheme} more robust than FP", (scheme, attack), ("fp", attack))
        for low, high in LOWER_BITS:
            add("lower bits more robust", f"{attack}: {low} more robust than {high}", (low, attack), (high, attack))
        for wa, w in WA_VS_W:
            add("WA more robust than W", f"{attack}: {wa} more robust than {w}", (wa, attack), (w, attack))
    for scheme in ROWS[1:]:
        for aware, oblivious in QUANTIZATION_AWARE.items():
            add("QAA stronger than QOA", f"{scheme}: {aware} stronger than {oblivious}", (scheme, oblivious), (scheme, aware))
    return pd.DataFrame(rows)


def _task_method(summary: pd.DataFrame, scheme: str) -> tuple[str, str]:
    first = summary[summary.scheme == scheme].iloc[0]
    return first.task, first.method


ABLATION_SCHEMES = [parse_scheme("1W", "bnn"), parse_scheme("4W"), parse_scheme("8W")]  # weights only
SWITCHES = [(False, False), (True, False), (False, True), (True, True)]  # (PAQ, ĝ), Table 4's row order


def ghat_is_identity(scheme: QuantScheme) -> bool:
    """Is ĝ = B ⊙ ∇ the plain gradient for this scheme? Yes for int weights with full-precision activations:
    the max-abs scale keeps every w/s inside the grid, so B ≡ 1, and s is a constant. Not for BNN, whose
    F = α·sign(w) passes α·1_[−1,1](w) ⊙ ∇ back, nor for quantized activations."""
    return scheme.method == "int" and scheme.a_bits is None


def ablation_attack(scheme: QuantScheme, paq: bool, ghat: bool) -> tuple[str, dict, str]:
    """How Table 4's cell (``paq``, ``ghat``) is computed: (attack, switches, label).

    Both switches off is GC, eq. (4), on the same target, so that cell reuses GC's poison (Tables 1 and 3);
    both on is Table 3's GC-Q. Where ĝ is the identity (:func:`ghat_is_identity`) the ĝ switch changes
    nothing, so "PAQ only" is GC-Q and "ĝ only" is GC, and those cells reuse their poisons.
    """
    if ghat != paq and ghat_is_identity(scheme):
        name, switches, label = ablation_attack(scheme, paq, paq)
        return name, switches, f"{label}; ĝ = ∇ here (B ≡ 1)"
    if not (paq or ghat):
        return "gc", {}, "GC (eq. 4)"
    if paq and ghat:
        return "gc_q", {}, "GC-Q (eq. 5)"
    return "gc_q", {"paq": paq, "quantized_grad": ghat}, "PAQ only" if paq else "ĝ only"


def ablation_grid(cfg: Preset) -> list[tuple]:
    """Table 4's cells (seed, scheme, PAQ, ĝ)."""
    return [(seed, scheme, paq, ghat) for seed in cfg.seeds for scheme in ABLATION_SCHEMES for paq, ghat in SWITCHES]


def table4(cfg: Preset, progress: bool = True) -> pd.DataFrame:
    """Table 4's runs: GC-Q's four (PAQ, ĝ) combinations against weight-only QAT at 1 (BNN), 4 and 8 bits,
    at ε_d = ``cfg.eps_d``, once per seed. One progress bar over the grid; shared poisons are made once."""
    train, test = load_data(cfg)
    grid = ablation_grid(cfg)
    rows = []
    bar = tqdm(grid, desc="GC-Q ablation", disable=not progress)
    for seed, scheme, paq, ghat in bar:
        bar.set_postfix(cell=f"{scheme.name} PAQ={paq} ĝ={ghat} s{seed}")
        name, switches, computed_as = ablation_attack(scheme, paq, ghat)
        poison, seconds = attack_poison(cfg, name, seed, cfg.eps_d, train, test, scheme if name == "gc_q" else None,
                                        **switches)
        row = retrain_and_evaluate(poison, scheme, "qat", cfg, seed, train, test)
        rows.append({**row, "bits": scheme.w_bits, "paq": paq, "ghat": ghat, "computed_as": computed_as,
                     "attack_seconds": seconds, "poison": poison.digest()[:12]})
    return pd.DataFrame(rows)


def table4_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per bit-width and (PAQ, ĝ): our drop (mean, std, per seed), how it was computed, its poisons (one
    digest per seed), the paper's."""
    keys = ["bits", "paq", "ghat"]
    summary = drop_summary(df, keys)
    cells = df.sort_values("seed").groupby(keys).agg(computed_as=("computed_as", "first"), poisons=("poison", " ".join))
    summary = summary.join(cells, on=keys)
    return summary.assign(paper=[paper.TABLE4.get(k) for k in zip(summary.bits, summary.paq, summary.ghat)])


SAME_POISON = "untestable here: same poison (B ≡ 1)"


def table4_claims(summary: pd.DataFrame) -> pd.DataFrame:
    """"PAQ and ĝ are both needed": at each bit-width, both switches on beats each of the other three cells.

    Two cells that share their poisons (ĝ = ∇, see :func:`ablation_attack`) cannot be told apart: the verdict
    is ``SAME_POISON``. A comparison of the same two sets of poisons as an earlier row is left out.
    """
    row = summary.set_index(["bits", "paq", "ghat"]).loc
    label = lambda paq, ghat: {(False, False): "neither", (True, False): "PAQ only", (False, True): "ĝ only"}[(paq, ghat)]
    rows, seen = [], set()
    for bits in summary.bits.unique():
        for paq, ghat in SWITCHES[:3]:
            worse, better = row[(bits, True, True)], row[(bits, paq, ghat)]
            if (better.poisons, worse.poisons) in seen:
                continue
            seen.add((better.poisons, worse.poisons))
            rows.append(claim(f"{bits}-bit: PAQ + ĝ stronger than {label(paq, ghat)}", better, worse, paper.TABLE4,
                              (bits, paq, ghat), (bits, True, True)))
            if better.poisons == worse.poisons:
                rows[-1].update({"our run": SAME_POISON, "agrees": None})
    return pd.DataFrame(rows)
