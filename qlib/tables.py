"""The paper's tables as tidy summaries: our mean ± std over seeds beside the paper's number, and its claims.

Every drop is test accuracy after retraining on μ+ν minus the clean model's of the same scheme, regime and
seed (negative = the attack hurt). A claim compares two drops: it *holds* when the difference has the
claimed sign and exceeds the noise (the larger of the two seed standard deviations), it is *within noise*
when the difference is no larger than that, and it *fails* otherwise. With a single seed there is no noise
estimate, and the verdict says so instead.
"""

import pandas as pd

from . import paper
from .presets import Preset
from .quant import QuantScheme
from .study import FP, PTQ_SCHEMES, attack_drops, mean_std

QOA = ["label_flip", "tgda", "gc"]  # quantization-oblivious attacks of Tables 1 and 3
PTQ_CELLS = [("fp", FP)] + [("ptq", s) for s in PTQ_SCHEMES]
ONE_SEED = "one seed: no noise estimate"
VERDICTS = ("holds", "within noise", "fails", ONE_SEED)


def precision(scheme: QuantScheme) -> str:
    """``FP``, ``1-bit``, ``4-bit`` or ``8-bit``: the row label of Tables 1 and 2."""
    return "FP" if scheme.is_fp else f"{scheme.w_bits}-bit"


def verdict(better: pd.Series, worse: pd.Series) -> str:
    """Does ``better`` (a row with mean, std and n of a drop) suffer less than ``worse``? See the module docstring."""
    if min(better.get("n", 2), worse.get("n", 2)) < 2:
        return ONE_SEED
    gap, noise = better["mean"] - worse["mean"], max(better["std"], worse["std"])
    return "within noise" if abs(gap) <= noise else ("holds" if gap > 0 else "fails")


def table1(cfg: Preset, progress: bool = True) -> pd.DataFrame:
    """Table 1's runs: label flip, TGDA and GC at ε_d = ``cfg.eps_d`` under FP and PTQ at 1, 4 and 8 bits."""
    df = attack_drops(cfg, QOA, [cfg.eps_d], PTQ_CELLS, progress)
    return df.assign(precision=[precision(s) for s in _schemes(df)])


def budget_sweep(cfg: Preset, eps_ds: list[float], attacks: list[str], progress: bool = True) -> pd.DataFrame:
    """Beyond the paper: the drop against ε_d under FP and PTQ. One FP retrain on μ+ν serves every bit-width."""
    df = attack_drops(cfg, attacks, eps_ds, PTQ_CELLS, progress)
    return df.assign(precision=[precision(s) for s in _schemes(df)])


def _schemes(df: pd.DataFrame) -> list[QuantScheme]:
    by_name = {s.name: s for s in [FP, *PTQ_SCHEMES]}
    return [by_name[name] for name in df.scheme]


def drop_summary(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean ± std of the drop over seeds, plus one column per seed. A cell with a seed twice is an error."""
    repeated = df[df.duplicated(by + ["seed"])]
    if len(repeated):
        raise ValueError(f"{len(repeated)} rows repeat a ({', '.join(by)}, seed) cell, e.g. {repeated.iloc[0][by + ['seed']].to_dict()}")
    summary = mean_std(df, "drop", by)
    per_seed = df.pivot_table(index=by, columns="seed", values="drop", sort=False)
    per_seed.columns = [f"seed {s}" for s in per_seed.columns]
    return summary.set_index(by).join(per_seed).reset_index()


def table1_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per precision and attack: clean accuracy, our drop (mean, std, per seed) and the paper's."""
    summary = drop_summary(df, ["precision", "attack"])
    summary = summary.join(df.groupby(["precision", "attack"])["clean_acc"].mean(), on=["precision", "attack"])
    return summary.assign(paper=[paper.TABLE1.get(k) for k in zip(summary.precision, summary.attack)])


def table1_claims(summary: pd.DataFrame) -> pd.DataFrame:
    """Section 2.1's claims, per attack: PTQ is more robust than FP, and lower bits are more robust."""
    rows = []
    row = lambda p, a: summary[(summary.precision == p) & (summary.attack == a)].iloc[0]
    for attack in summary.attack.unique():
        fp = row("FP", attack)
        for bits in ("8-bit", "4-bit", "1-bit"):
            q = row(bits, attack)
            rows.append(claim(f"{attack}: PTQ {bits} more robust than FP", q, fp, paper.TABLE1, (bits, attack), ("FP", attack)))
        for low, high in (("1-bit", "4-bit"), ("4-bit", "8-bit")):
            rows.append(claim(f"{attack}: PTQ {low} more robust than {high}", row(low, attack), row(high, attack),
                               paper.TABLE1, (low, attack), (high, attack)))
    return pd.DataFrame(rows)


def claim(text: str, better: pd.Series, worse: pd.Series, table: dict, better_key, worse_key) -> dict:
    """One row of a claims table: ``better`` should suffer less than ``worse``. Our drops (mean of seeds), the
    noise, what the paper's own ``table`` says at (``better_key``, ``worse_key``), our verdict, and whether the
    two agree (both "holds" or both "fails"; None where the paper has no number)."""
    paper_says = None
    if better_key in table and worse_key in table:
        paper_says = "holds" if table[better_key] > table[worse_key] else "fails"
    ours = verdict(better, worse)
    return {"claim": text, "ours": f"{100 * better['mean']:+.2f} vs {100 * worse['mean']:+.2f}",
            "noise": f"±{100 * max(better['std'], worse['std']):.2f}", "paper": paper_says, "our run": ours,
            "agrees": None if paper_says is None else ours == paper_says}


def table2_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Table 2: per precision, the GradPC target's drop and ε_w (mean ± std over seeds) beside the paper's."""
    out = mean_std(df, "drop", ["precision"]).rename(columns={"mean": "drop", "std": "drop_std"})
    eps = mean_std(df, "eps_w", ["precision"]).set_index("precision")[["mean", "std"]]
    out = out.join(eps.rename(columns={"mean": "eps_w", "std": "eps_w_std"}), on="precision")
    out = out.join(df.groupby("precision")["drop_vs_ptq"].mean(), on="precision")
    return out.assign(paper_drop=[paper.TABLE2[p][0] for p in out.precision],
                      paper_eps_w=[paper.TABLE2[p][1] for p in out.precision])
