"""The statistics every table uses: summaries over seeds, and one rule that decides every claim.

*Summaries.* Mean ± standard deviation over seeds (:func:`mean_std`) with one column per seed (:func:`summarise`);
a rate, k successes of n trials, with its Wilson 95% interval (:func:`wilson`, :func:`rate`), for display.

*Claims.* A claim says that one cell (``better``) comes out above another (``worse``): a smaller drop, a higher
success rate. Both cells are measured on the same units: the same seeds (a drop per seed: the clean and poisoned
runs of a seed, or one scheme's drop and another's), or the same trials (the targeted attack: a target and a seed).
A claim is decided on the per-unit differences d_i = better_i − worse_i, over the units present in both cells only:

- values (drops, log ratios): the paired t-test (:func:`paired`): the mean d̄ and standard deviation s of the n
  differences, the 95% interval d̄ ± t_{0.975,n−1}·s/√n, the two-sided p of t = d̄/(s/√n) on n − 1 degrees of
  freedom, and the minimum detectable effect MDE = (t_{0.975,n−1} + t_{0.8,n−1})·s/√n: the smallest true mean
  difference the test finds with power 0.8 at α = 0.05;
- outcomes 0/1 (the target flipped, or not): the exact McNemar test (:func:`mcnemar`) on the b trials where only
  ``better`` succeeded and the c where only ``worse`` did: p is the two-sided binomial p of b of b + c at 1/2, the
  difference is (b − c)/n with the Clopper-Pearson 95% interval of b/(b + c) mapped onto it, and the MDE is that of
  the most favourable case (no trial against the claim), a lower bound for any other.

The decision (:func:`claims`): within each family of claims (the ``family`` of a :class:`Comparison`, in one call),
the p-values become Benjamini-Hochberg q-values (the false discovery rate); a claim *holds* when q ≤ 0.05 and
d̄ > 0, *fails* when q ≤ 0.05 and d̄ < 0, and is *undecided* otherwise. With fewer than two units there is no test
(p is NaN): undecided. The decision is BH-adjusted: since q ≥ p, a decided claim's 95% interval excludes 0, but a
claim whose unadjusted interval excludes 0 may stay undecided. An undecided claim is not evidence of no effect: its
MDE says how large an effect the data could have missed. Those claims tables are *exploratory*: the reports show them,
and no verdict is counted from them.

*Primary comparisons* (``qlib.design``) are decided by a group-sequential design on repeated confidence intervals
(Jennison & Turnbull 1989, "Interim analyses: the repeated confidence interval approach", JRSS B 51:305-361; and
their book, 2000, ch. 9). Seeds come in groups; after look k (n_k seeds) the (1 − α) repeated confidence interval
of the mean paired difference is d̄ ± c_k·s/√n_k, where c_k are the two-sided O'Brien-Fleming-type boundaries of Lan &
DeMets's alpha-spending function α(t) = 4 − 4Φ(z_{1−α/4}/√t) (α/2 a side) at the information fraction t = n_k/n_max
(Lan & DeMets 1983, Biometrika 70:659-663; :func:`spending_bounds`), each carried from the normal to the t distribution
on n_k − 1 degrees of freedom by its tail probability (:func:`look`). The intervals cover the true difference at
every look at once with probability ≥ 1 − α, so each decision below is wrong with probability at most α, however
many looks were taken and whichever decision stopped the comparison:

- *holds*: the interval lies above 0 (the claimed direction); *fails*: below 0; either may stop a comparison at
  any look;
- *negligible*, at the cap only: the interval lies inside (−δ, δ), δ the comparison's smallest effect of interest
  (the equivalence test of Schuirmann's two one-sided tests, TOST 1987, at each side's α/2);
- otherwise the comparison gets the next group of seeds, up to the cap n_max; still none: *undecided*.

Why negligible waits for the cap: a true difference between 0 and δ is both real and negligible, and with early
stops on both the verdict would be whichever interval came first, a race that another CPU's kernels decide
(measured: one comparison at 0.45 points, δ 1, was negligible after 10 seeds on AVX-512 and held after 15 under
portable kernels). Stopping early on direction only, the verdict is the one the growing interval settles on. Each
look also says where the interval lies against δ (``size``: "< δ", "≥ δ" or "unclear"), so a claim that holds by
less than δ is told apart from one that holds by more.

A *targeted* primary comparison has 0/1 outcomes per trial and a fixed number of trials, decided once
(:func:`paired_rates`): *holds* or *fails* by the exact McNemar test at level α (two-sided, so α/2 a direction);
the difference in success rates (worse's − better's, points) is shown with Newcombe's interval for paired
proportions (1998, Statistics in Medicine 17:2635-2650, method 10: Wilson score limits of the two rates combined
with the trials' correlation), at 1 − α; *negligible* when that interval lies inside (−δ, δ) (TOST, as above),
*undecided* otherwise. Its trials for power 0.9 (:func:`trials_for_power`) are computed exactly from the pilot
trials' share of discordant pairs.

A family of m primary comparisons (one claim) is tested at α/m each (Bonferroni), which bounds the family-wise
error, and so its false discovery rate, at α. The seeds a comparison needs (:func:`seeds_for_power`) come from the
standard deviation of its differences on pilot seeds that never decide.
"""

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import brentq

VERDICTS = ("holds", "undecided", "fails")  # exploratory claims tables
PRIMARY_VERDICTS = ("holds", "fails", "negligible", "undecided")  # primary comparisons (module docstring)
ALPHA, POWER = 0.05, 0.8  # the level of every test, and the power the MDE is computed for
DESIGN_POWER = 0.9  # the power a primary comparison's seeds are planned for (seeds_for_power)
Z95 = 1.959963984540054


def mean_std(df: pd.DataFrame, value: str, by: list[str] | None = None) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1; 0 for a single seed) and count of ``value``, grouped by ``by``."""
    grouped = df.groupby(by, sort=False)[value] if by else df[value].to_frame().groupby(lambda _: 0)[value]
    out = grouped.agg(mean="mean", std="std", n="count").fillna({"std": 0.0})
    return out.reset_index(drop=not by)


def summarise(
    df: pd.DataFrame,
    by: list[str],
    value: str = "drop",
    paper: dict | None = None,
    paper_key=None,
    first: tuple[str, ...] = (),
    means: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Per cell (``by``): mean ± std of ``value`` over seeds and one column per seed; the first value of each of
    ``first`` and the mean of each of ``means`` (columns constant or averaged within a cell); and, with ``paper``,
    the paper's number at ``paper_key(row)`` (default: the ``by`` values). A cell with a seed twice is an error."""
    repeated = df[df.duplicated(by + ["seed"])]
    if len(repeated):
        raise ValueError(
            f"{len(repeated)} rows repeat a ({', '.join(by)}, seed) cell, "
            f"e.g. {repeated.iloc[0][by + ['seed']].to_dict()}"
        )
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


def paired(differences) -> dict:
    """The paired t-test of ``differences`` (one per unit, NaN skipped) against 0: {n, mean, sd, low, high, p, mde},
    the 95% t interval (low, high) and the minimum detectable effect (see the module docstring). Fewer than two
    differences: no test (sd, low, high, p and mde NaN). Identical differences: p is 0, or 1 if they are all 0."""
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return {"n": n, "mean": mean, "sd": math.nan, "low": math.nan, "high": math.nan, "p": math.nan, "mde": math.nan}
    sd = float(d.std(ddof=1))
    se, t_crit = sd / math.sqrt(n), stats.t.ppf(1 - ALPHA / 2, n - 1)
    p = (1.0 if mean == 0 else 0.0) if sd == 0 else float(2 * stats.t.sf(abs(mean) / se, n - 1))
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "low": float(mean - t_crit * se),
        "high": float(mean + t_crit * se),
        "p": p,
        "mde": float((t_crit + stats.t.ppf(POWER, n - 1)) * se),
    }


def mcnemar(differences) -> dict:
    """The exact McNemar test of paired 0/1 outcomes, from their ``differences`` (better − worse per trial, each −1,
    0 or 1; NaN skipped): {n, b, c, mean, low, high, p, mde}. ``mean`` is (b − c)/n; (low, high) the Clopper-Pearson
    95% interval of b/(b + c), conditional on the b + c discordant trials, mapped by θ ↦ (b + c)(2θ − 1)/n (NaN
    without a discordant trial), so that it excludes 0 exactly when p ≤ 0.05; ``mde`` the smallest (b − c)/n in the
    population that the test finds with power 0.8 when no trial goes against the claim (c = 0: it then rejects when
    b reaches the smallest count k with 2·2^−k ≤ 0.05, and P(Binomial(n, Δ) ≥ k) ≥ 0.8 at Δ = the 0.8 quantile of
    Beta(k, n − k + 1)); NaN when n < k. Any c > 0 needs a larger effect."""
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    if not np.isin(d, (-1, 0, 1)).all():
        raise ValueError(f"McNemar's test needs paired 0/1 outcomes (differences −1, 0 or 1), got {sorted(set(d))}")
    n, b, c = len(d), int((d == 1).sum()), int((d == -1).sum())
    out = {"n": n, "b": b, "c": c, "mean": (b - c) / n if n else math.nan, "low": math.nan, "high": math.nan, "p": 1.0}
    if b + c:
        test = stats.binomtest(b, b + c, 0.5)
        ci = test.proportion_ci(1 - ALPHA, method="exact")
        out |= {"p": float(test.pvalue), "low": (b + c) * (2 * ci.low - 1) / n, "high": (b + c) * (2 * ci.high - 1) / n}
    k = math.ceil(math.log2(2 / ALPHA))  # 6: two-sided p = 2·2^−k of k discordant trials all one way
    return out | {"mde": float(stats.beta.ppf(POWER, k, n - k + 1)) if n >= k else math.nan}


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


class Comparison(NamedTuple):
    """One claim: the cell at ``better`` should come out above the cell at ``worse`` (keys of the per-unit table)."""

    family: str
    text: str
    better: tuple
    worse: tuple


def decision(
    up: bool, down: bool, low: float = math.nan, high: float = math.nan, delta: float | None = None, final: bool = True
) -> str | None:
    """The one verdict rule, for exploratory claims and primary comparisons alike: *holds* when the test shows the
    claimed direction (``up``), *fails* when it shows the opposite (``down``); otherwise, at the ``final`` look,
    *negligible* when a ``delta`` is given and the interval (``low``, ``high``) lies inside (−δ, δ) around 0 (TOST),
    else *undecided*; None before the final look (go on)."""
    if up:
        return "holds"
    if down:
        return "fails"
    if not final:
        return None
    if delta is not None and -delta < low and high < delta and low <= 0 <= high:
        return "negligible"
    return "undecided"


def effect_size(low: float, high: float, delta: float) -> str:
    """Where the interval (``low``, ``high``) lies against δ: "< δ" (inside (−δ, δ)), "≥ δ" (beyond it) or "unclear"."""
    return "< δ" if -delta < low and high < delta else "≥ δ" if low >= delta or high <= -delta else "unclear"


def verdict(mean: float, q: float) -> str:
    """The decision on an exploratory claim from its mean difference and its q-value (see the module docstring)."""
    shown = q <= ALPHA
    return decision(shown and mean > 0, shown and not mean > 0)


def claims(
    per_unit: pd.DataFrame,
    comparisons: list[Comparison],
    paper: dict | None = None,
    paper_key=lambda k: k,
    scale: float = 100.0,
    units: str = "seed ",
    test: Callable[..., dict] = paired,
) -> pd.DataFrame:
    """A claims table: per comparison, decided by ``test`` (:func:`paired` or :func:`mcnemar`) on the differences
    better − worse of the columns of ``per_unit`` whose names start with ``units`` (one per seed, as
    :func:`summarise` makes them, or per trial), and Benjamini-Hochberg within each family (the module docstring).
    ``per_unit`` is indexed by the comparisons' keys. Columns: family, claim, ``better`` and ``worse`` (each cell's
    mean over its own units), ``difference`` (the mean paired difference) with its 95% interval (``low``,
    ``high``), ``mde``, all times ``scale`` (100: points); ``n`` (the units paired), ``p``, ``q``; ``paper``, what
    the ``paper``'s numbers at ``paper_key(key)`` say ("holds" or "fails"; None where it has none); ``our run``,
    the verdict; ``agrees``, whether both say "holds" or both "fails" (None without the paper's)."""
    values = per_unit[[c for c in per_unit.columns if str(c).startswith(units)]]
    rows = []
    for family, text, better_key, worse_key in comparisons:
        better, worse = values.loc[better_key], values.loc[worse_key]
        result = test(better - worse)
        pb, pw = (paper or {}).get(paper_key(better_key)), (paper or {}).get(paper_key(worse_key))
        rows.append(
            {
                "family": family,
                "claim": text,
                "better": scale * better.mean(),
                "worse": scale * worse.mean(),
                "difference": scale * result["mean"],
                "low": scale * result["low"],
                "high": scale * result["high"],
                "mde": scale * result["mde"],
                "n": result["n"],
                "p": result["p"],
                "q": math.nan,
                "paper": None if pb is None or pw is None else ("holds" if pb > pw else "fails"),
            }
        )
    out = pd.DataFrame(
        rows, columns=["family", "claim", "better", "worse", "difference", "low", "high", "mde", "n", "p", "q", "paper"]
    )
    for _, p in out.groupby("family", sort=False)["p"]:
        tested = p.dropna()
        if len(tested):
            out.loc[tested.index, "q"] = stats.false_discovery_control(tested.to_numpy(), method="bh")
    out["our run"] = [verdict(m, q) for m, q in zip(out.difference, out.q)]
    out["agrees"] = pd.Series(
        [None if pd.isna(said) else ours == said for said, ours in zip(out.paper, out["our run"])],
        index=out.index,
        dtype=object,
    )
    return out


def tally(claims: pd.DataFrame, unit: str = "points") -> str:
    """``2 hold, 13 undecided (MDE 0.31-14.80 points), 0 fail (of 15)``: how many of :func:`claims`'s rows got each
    verdict, and the range of the undecided ones' minimum detectable effects (smaller effects could be missed)."""
    n = claims["our run"].value_counts()
    mde, missed = claims.loc[claims["our run"] == "undecided", "mde"].dropna(), ""
    if len(mde):
        low, high = f"{mde.min():.2f}", f"{mde.max():.2f}"
        missed = f" (MDE {low if low == high else f'{low}-{high}'} {unit})"
    return (
        f"{n.get('holds', 0)} hold, {n.get('undecided', 0)} undecided{missed}, "
        f"{n.get('fails', 0)} fail (of {len(claims)})"
    )


def fmt_pct(mean: float, std: float) -> str:
    """``89.31% ± 0.22`` from fractions."""
    return f"{100 * mean:.2f}% ± {100 * std:.2f}"


def points(v: float) -> str:
    """A fraction as signed points (``+1.23``); blank where missing."""
    return "" if pd.isna(v) else f"{100 * v:+.2f}"


def percent(v: float) -> str:
    """A fraction as a percentage (``89.31%``); blank where missing."""
    return "" if pd.isna(v) else f"{100 * v:.2f}%"


# -- primary comparisons: the group-sequential design (module docstring) --


def spending(t, alpha: float = ALPHA):
    """Lan & DeMets's O'Brien-Fleming-type spending function: the two-sided α spent by information fraction ``t``,
    α/2 on each side, 2·(2 − 2Φ(z_{1−α/4}/√t))."""
    return 4 - 4 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 4) / np.sqrt(t))


def spending_bounds(fractions, alpha: float = ALPHA, grid: int = 2001) -> np.ndarray:
    """Two-sided boundaries c_1..c_K on the standardised statistic Z_k = S_k/√n_k at the increasing information
    fractions ``fractions`` (the last 1): P(|Z_j| < c_j for j < k, |Z_k| ≥ c_k) = α(t_k) − α(t_{k−1}) under the null,
    Z_k the partial sums of independent N(0, 1) increments. Computed by integrating the density of S_k over the
    continuation region on a grid (Armitage, McPherson & Rowe 1969), so it is deterministic."""
    return np.array(_bounds(tuple(float(f) for f in fractions), float(alpha), grid))


@functools.lru_cache(maxsize=64)
def _bounds(fractions: tuple, alpha: float, grid: int) -> tuple:
    t = np.asarray(fractions, dtype=float)
    if not (len(t) and np.all(np.diff(t) > 0) and t[0] > 0 and abs(t[-1] - 1) < 1e-12):
        raise ValueError(f"information fractions must increase in (0, 1] and end at 1, got {list(t)}")
    spent = spending(t, alpha)
    bounds, density, x = [], None, None  # density of S_k on the continuation region at points x (S scaled by t)
    for k, tk in enumerate(t):
        target = spent[k] - (spent[k - 1] if k else 0.0)
        if k == 0:
            c = stats.norm.ppf(1 - target / 2)
        else:
            var = tk - t[k - 1]

            def crossed(c, x=x, density=density, var=var, tk=tk):  # P(continue to k−1 and |Z_k| ≥ c)
                edge = c * np.sqrt(tk)
                tails = stats.norm.sf((edge - x) / np.sqrt(var)) + stats.norm.cdf((-edge - x) / np.sqrt(var))
                return np.trapezoid(density * tails, x)

            c = brentq_bound(lambda c, crossed=crossed, target=target: crossed(c) - target)
        bounds.append(c)
        edge = c * np.sqrt(tk)
        new_x = np.linspace(-edge, edge, grid)
        if k == 0:
            density = stats.norm.pdf(new_x, scale=np.sqrt(tk))
        else:
            kernel = stats.norm.pdf((new_x[:, None] - x[None, :]) / np.sqrt(var)) / np.sqrt(var)
            density = np.trapezoid(kernel * density[None, :], x, axis=1)
        x = new_x
    return tuple(bounds)


def brentq_bound(f) -> float:
    """The root of the decreasing ``f`` on (0, 40): a boundary."""
    return float(brentq(f, 1e-6, 40.0, xtol=1e-10))


def look(differences, delta: float, bound: float, final: bool = False) -> dict:
    """One look of the design at the paired ``differences`` (NaN skipped) with the normal boundary ``bound`` (from
    :func:`spending_bounds`): {n, mean, sd, low, high, size, verdict}, (low, high) the repeated confidence interval
    d̄ ± c_t·s/√n, c_t the t quantile on n − 1 degrees of freedom with the tail probability of ``bound``; ``size``
    where it lies against ``delta`` ("< δ", "≥ δ", "unclear"). The verdict is "holds", "fails", at the ``final``
    look "negligible" (inside (−``delta``, ``delta``)) or "undecided", else None (go on)."""
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    n = len(d)
    if n < 2:
        return {
            "n": n,
            "mean": float(d.mean()) if n else math.nan,
            "sd": math.nan,
            "low": math.nan,
            "high": math.nan,
            "size": "unclear",
            "verdict": "undecided" if final else None,
        }
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(stats.t.isf(stats.norm.sf(bound), n - 1)) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    size = effect_size(low, high, delta)
    verdict = decision(low > 0, high < 0, low, high, delta, final)
    return {"n": n, "mean": mean, "sd": sd, "low": low, "high": high, "size": size, "verdict": verdict}


def sequential(differences, looks: list[int], delta: float, alpha: float = ALPHA) -> list[dict]:
    """The design run on ``differences`` (in seed order) with looks after the first n_k of them (``looks``, the last
    the cap): :func:`look` at each until one decides (the last always does). One record per look taken, each with
    its ``bound``."""
    bounds = spending_bounds(np.asarray(looks) / looks[-1], alpha)
    out = []
    for k, (n, c) in enumerate(zip(looks, bounds)):
        final = k == len(looks) - 1
        out.append(look(np.asarray(differences, dtype=float)[:n], delta, c, final) | {"bound": float(c), "look": k + 1})
        if out[-1]["verdict"]:
            break
    return out


def seeds_for_power(
    sd: float, delta: float, alpha: float = ALPHA, power: float = DESIGN_POWER, cap: int = 1000
) -> int | None:
    """The seeds a paired t-test at two-sided level ``alpha`` needs to find a true difference ``delta`` with
    ``power``, when the paired differences have standard deviation ``sd``: the smallest n ≥ 2 with
    P(T'_{n−1}(δ√n/sd) > t_{1−α/2, n−1}) ≥ power (noncentral t). None if more than ``cap``; 2 if ``sd`` is 0. The
    group-sequential design needs a few percent more (O'Brien-Fleming's boundaries end slightly above the fixed
    test's)."""
    if not sd > 0:
        return 2
    for n in range(2, cap + 1):
        crit = stats.t.isf(alpha / 2, n - 1)
        if stats.nct.sf(crit, n - 1, delta * math.sqrt(n) / sd) >= power:
            return n
    return None


def paired_rates(pairs, delta: float, alpha: float = ALPHA) -> dict:
    """A targeted primary comparison decided on its trials (module docstring): ``pairs``, one (worse's success,
    better's success) of 0/1 outcomes per trial. {n, only_worse, only_better, mean, low, high, p, size, verdict}, in
    points: ``mean`` 100·(only_worse − only_better)/n, worse's success rate minus better's; (low, high) Newcombe's
    (1 − ``alpha``) interval (method 10, with his corrected φ); p the exact McNemar p (two-sided); ``size`` as
    :func:`look`'s. Negligible needs the interval inside (−δ, δ) *and* around 0: where it excludes 0 but the exact
    test does not, the direction is neither shown nor ruled out, and the verdict is undecided."""
    x = np.asarray(pairs, dtype=int)
    if x.ndim != 2 or x.shape[1] != 2 or len(x) < 1:
        raise ValueError(f"paired rates need (worse, better) pairs, one per trial, got an array of shape {x.shape}")
    if not np.isin(x, (0, 1)).all():
        raise ValueError(f"paired rates need 0/1 outcomes, got {sorted(set(x.flatten().tolist()))}")
    worse, better = x[:, 0], x[:, 1]
    n = len(x)
    a, b, c, d = (int(((worse == i) & (better == j)).sum()) for i, j in ((1, 1), (1, 0), (0, 1), (0, 0)))
    p1, p2 = (a + b) / n, (a + c) / n
    z = stats.norm.isf(alpha / 2)
    (l1, u1), (l2, u2) = wilson(a + b, n, z), wilson(a + c, n, z)
    cross = a * d - b * c
    cross = max(cross - n / 2, 0) if cross > 0 else cross  # Newcombe's correction of φ
    denominator = (a + b) * (c + d) * (a + c) * (b + d)
    phi = cross / math.sqrt(denominator) if denominator else 0.0
    low = p1 - p2 - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = p1 - p2 + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    p = float(stats.binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
    mean, low, high = 100 * (b - c) / n, 100 * low, 100 * high
    size = effect_size(low, high, delta)
    verdict = decision(p <= alpha and b > c, p <= alpha and c > b, low, high, delta)
    return {
        "n": n,
        "only_worse": b,
        "only_better": c,
        "mean": mean,
        "low": low,
        "high": high,
        "p": p,
        "size": size,
        "verdict": verdict,
    }


def _thresholds(alpha: float, cap: int) -> np.ndarray:
    """k_D for D = 0..cap discordant trials: the smallest count one way with 2·P(Binomial(D, ½) ≥ k) ≤ alpha (D + 1
    where none is)."""
    out = np.empty(cap + 1, dtype=int)
    for big_d in range(cap + 1):
        tail = 2 * stats.binom.sf(np.arange(big_d + 1) - 1, big_d, 0.5)  # 2·P(Bin(D, ½) ≥ k) for k = 0..D
        reject = np.nonzero(tail <= alpha)[0]
        out[big_d] = reject[0] if len(reject) else big_d + 1
    return out


def mcnemar_power(
    n: int, discordant: float, effect: float, alpha: float = ALPHA, thresholds: np.ndarray | None = None
) -> float:
    """The exact McNemar test's power at level ``alpha`` (two-sided) to find, on ``n`` trials, a difference in
    success rates of ``effect`` (a fraction, not points) in the claimed direction when a trial is discordant with
    probability ``discordant`` (≥ ``effect``): the sum over D discordant trials ~ Binomial(n, discordant) of P(b ≥ k_D),
    b ~ Binomial(D, (discordant + effect) / (2·discordant)), k_D the smallest b with 2·P(Binomial(D, ½) ≥ b) ≤ alpha."""
    if not 0 < effect <= discordant <= 1:
        raise ValueError(
            f"mcnemar_power needs 0 < effect ≤ discordant ≤ 1 (fractions), got effect={effect}, discordant={discordant}"
        )
    k = _thresholds(alpha, n) if thresholds is None else thresholds[: n + 1]
    big_d = np.arange(n + 1)
    one_way = stats.binom.sf(k - 1, big_d, (discordant + effect) / (2 * discordant))
    return float((stats.binom.pmf(big_d, n, discordant) * one_way).sum())


def trials_for_power(
    discordant: float, delta: float, alpha: float = ALPHA, power: float = DESIGN_POWER, cap: int = 1000
) -> int | None:
    """The trials the exact McNemar test needs (:func:`mcnemar_power`) for ``power`` at a difference ``delta``
    (*points*) when a trial is discordant with probability ``discordant`` (raised to delta/100 if below it: a
    difference that large needs at least that many discordant trials). None if more than ``cap``. Power is
    saw-toothed in n (the exact test's discreteness): a few trials more can have slightly less."""
    effect = delta / 100
    share = min(1.0, max(discordant, effect))
    k = _thresholds(alpha, cap)
    return next((n for n in range(6, cap + 1) if mcnemar_power(n, share, effect, alpha, k) >= power), None)
