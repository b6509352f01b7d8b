"""The statistics every table uses: one rule per kind of data.

- *Means* (accuracy drops and other per-seed numbers): mean ± standard deviation over seeds (:func:`mean_std`,
  :func:`summarise`); two cells are compared by :func:`verdict_means`: a claim *holds* when the gap has the claimed
  sign and exceeds the noise (the larger of the two standard deviations), is *within noise* when it does not, and
  *fails* otherwise; with one seed there is no noise estimate and the verdict says so. This is the one place to
  change the rule (for example to a paired test).
- *Rates* (k successes of n trials): the Wilson score interval (:func:`wilson`); two rates are compared by
  :func:`verdict_rates`: *holds* when the intervals do not overlap in the claimed direction, *fails* when they do
  not overlap the other way, else *within noise*.

:func:`claims` turns a list of comparisons into a claims table beside what the paper's own numbers say.
"""

import math
from typing import NamedTuple

import pandas as pd

ONE_SEED = "one seed: no noise estimate"
VERDICTS = ("holds", "within noise", "fails", ONE_SEED)
Z95 = 1.959963984540054


def mean_std(df: pd.DataFrame, value: str, by: list[str] | None = None) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1; 0 for a single seed) and count of ``value``, grouped by ``by``."""
    grouped = df.groupby(by, sort=False)[value] if by else df[value].to_frame().groupby(lambda _: 0)[value]
    out = grouped.agg(mean="mean", std="std", n="count").fillna({"std": 0.0})
    return out.reset_index(drop=not by)


def summarise(df: pd.DataFrame, by: list[str], value: str = "drop", paper: dict | None = None, paper_key=None,
              first: tuple[str, ...] = (), means: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per cell (``by``): mean ± std of ``value`` over seeds and one column per seed; the first value of each of
    ``first`` and the mean of each of ``means`` (columns constant or averaged within a cell); and, with ``paper``,
    the paper's number at ``paper_key(row)`` (default: the ``by`` values). A cell with a seed twice is an error."""
    repeated = df[df.duplicated(by + ["seed"])]
    if len(repeated):
        raise ValueError(f"{len(repeated)} rows repeat a ({', '.join(by)}, seed) cell, e.g. {repeated.iloc[0][by + ['seed']].to_dict()}")
    out = mean_std(df, value, by)
    per_seed = df.pivot_table(index=by, columns="seed", values=value, sort=False)
    per_seed.columns = [f"seed {s}" for s in per_seed.columns]
    out = out.set_index(by).join(per_seed).reset_index()
    extra = {**{c: (c, "first") for c in first}, **{c: (c, "mean") for c in means}}
    if extra:
        out = out.join(df.groupby(by, sort=False).agg(**extra), on=by)
    if paper is not None:
        key = paper_key or (lambda row: tuple(row[b] for b in by) if len(by) > 1 else row[by[0]])
        out["paper"] = [paper.get(key(row)) for _, row in out.iterrows()]
    return out


def paired_difference(df: pd.DataFrame, by: list[str], column: str, against, value: str = "drop") -> pd.DataFrame:
    """``value`` in each ``column`` level minus its value at level ``against``, paired by seed within each ``by``
    cell: one row per cell, level and seed, as column ``difference``."""
    wide = df.pivot_table(index=by + ["seed"], columns=column, values=value, sort=False)
    long = wide.drop(columns=against).sub(wide[against], axis=0).reset_index()
    return long.melt(id_vars=by + ["seed"], var_name=column, value_name="difference")


def verdict_means(better: pd.Series, worse: pd.Series) -> str:
    """Does ``better`` (a row with mean, std and n) come out above ``worse``? See the module docstring."""
    if min(better.get("n", 2), worse.get("n", 2)) < 2:
        return ONE_SEED
    gap, noise = better["mean"] - worse["mean"], max(better["std"], worse["std"])
    return "within noise" if abs(gap) <= noise else ("holds" if gap > 0 else "fails")


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a binomial rate k/n (Wilson 1927)."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"a binomial rate needs 0 ≤ k ≤ n and n ≥ 1, got k={k}, n={n}")
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (0.0 if k == 0 else centre - half), (1.0 if k == n else centre + half)  # exact ends: no rounding past k/n


def rate(k: int, n: int) -> dict:
    """k of n as {k, n, rate, low, high} (Wilson 95%)."""
    low, high = wilson(k, n)
    return {"k": k, "n": n, "rate": k / n, "low": low, "high": high}


def verdict_rates(better: dict, worse: dict) -> str:
    """Is ``better``'s rate above ``worse``'s (each a :func:`rate`, or a fixed proportion as {low, high} equal)?
    See the module docstring."""
    if better["low"] > worse["high"]:
        return "holds"
    if worse["low"] > better["high"]:
        return "fails"
    return "within noise"


class Comparison(NamedTuple):
    """One claim: the cell at ``better`` should come out above the cell at ``worse`` (keys of the summary's index)."""

    family: str
    text: str
    better: tuple
    worse: tuple


def claims(summary: pd.DataFrame, comparisons: list[Comparison], paper: dict | None = None, paper_key=lambda k: k,
           scale: float = 100.0) -> pd.DataFrame:
    """A claims table from ``summary`` (indexed by the comparisons' keys; columns mean, std, n): per comparison our
    two means, the noise, what the ``paper``'s numbers at ``paper_key(key)`` say (None where it has none), our
    :func:`verdict_means`, and whether the two agree (both "holds" or both "fails")."""
    rows = []
    for family, text, better_key, worse_key in comparisons:
        better, worse = summary.loc[better_key], summary.loc[worse_key]
        pb, pw = (paper or {}).get(paper_key(better_key)), (paper or {}).get(paper_key(worse_key))
        paper_says = None if pb is None or pw is None else ("holds" if pb > pw else "fails")
        ours = verdict_means(better, worse)
        rows.append({"family": family, "claim": text, "ours": f"{scale * better['mean']:+.2f} vs {scale * worse['mean']:+.2f}",
                     "noise": f"±{scale * max(better['std'], worse['std']):.2f}", "paper": paper_says, "our run": ours,
                     "agrees": None if paper_says is None else ours == paper_says})
    return pd.DataFrame(rows)


def fmt_pct(mean: float, std: float) -> str:
    """``89.31% ± 0.22`` from fractions."""
    return f"{100 * mean:.2f}% ± {100 * std:.2f}"


def points(v: float) -> str:
    """A fraction as signed points (``+1.23``); blank where missing."""
    return "" if pd.isna(v) else f"{100 * v:+.2f}"


def percent(v: float) -> str:
    """A fraction as a percentage (``89.31%``); blank where missing."""
    return "" if pd.isna(v) else f"{100 * v:.2f}%"
