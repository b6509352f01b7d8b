"""The statistics every table uses (``qlib.stats``): the paired t-test and its minimum detectable effect, the exact
McNemar test, the Benjamini-Hochberg decision on claims, the per-seed summary and the Wilson interval, on hand-made
numbers with known answers."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from qlib import stats

# Student's t with 2 degrees of freedom has the closed form F(t) = 1/2 + t / (2 √(2 + t²)), so its quantile at
# probability P is t = √(2 u² / (1 − u²)) with u = 2P − 1, and the two-sided p of t is 1 − |t| / √(2 + t²).
T2 = lambda prob: math.sqrt(2 * (2 * prob - 1) ** 2 / (1 - (2 * prob - 1) ** 2))


def test_paired_t_interval_p_and_mde_match_a_hand_computation():
    """d = 1, 2, 3: mean 2, sd 1, standard error 1/√3, t = 2√3 on 2 degrees of freedom."""
    out = stats.paired([1.0, 2.0, 3.0])
    se, t = 1 / math.sqrt(3), 2 * math.sqrt(3)
    assert (out["n"], out["mean"], out["sd"]) == (3, pytest.approx(2.0), pytest.approx(1.0))
    assert out["low"] == pytest.approx(2 - T2(0.975) * se) and out["high"] == pytest.approx(2 + T2(0.975) * se)
    assert T2(0.975) == pytest.approx(4.3027, abs=1e-4)  # the printed table's t_{0.975, 2}
    assert out["p"] == pytest.approx(1 - t / math.sqrt(2 + t * t))
    assert out["mde"] == pytest.approx((T2(0.975) + T2(0.8)) * se)


def test_paired_p_is_scipys_paired_t_test():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 7), rng.normal(0.5, 1, 7)
    assert stats.paired(b - a)["p"] == pytest.approx(scipy_stats.ttest_rel(b, a).pvalue)


def test_mde_shrinks_as_one_over_root_n():
    """With the same spread, four times the units detect half the effect (up to the t quantiles, which approach
    the normal's: (1.96 + 0.84)·sd/√n)."""
    spread = lambda n: np.tile([-1.0, 1.0], n // 2)  # sd √(n/(n−1)) → 1
    small, large = stats.paired(spread(400)), stats.paired(spread(1600))
    assert large["mde"] / small["mde"] == pytest.approx(0.5, rel=5e-3)  # the t quantiles differ by 0.3% here
    assert large["mde"] * math.sqrt(1600) / large["sd"] == pytest.approx(1.959964 + 0.841621, rel=2e-3)


def test_fewer_than_two_units_is_no_test():
    for d in ([], [0.3], [0.3, math.nan]):
        out = stats.paired(d)
        assert out["n"] == len([v for v in d if v == v]) and all(
            math.isnan(out[k]) for k in ("sd", "low", "high", "p", "mde")
        )


def test_identical_differences_are_exact():
    assert stats.paired([0.01, 0.01, 0.01])["p"] == 0.0 and stats.paired([0.0, 0.0])["p"] == 1.0


@pytest.mark.parametrize(
    "b, c, p",
    [
        (6, 0, 2 / 64),
        (5, 0, 2 / 32),
        (5, 1, 2 * 7 / 64),
        (8, 2, 2 * (1 + 10 + 45) / 1024),
        (2, 8, 2 * (1 + 10 + 45) / 1024),
    ],
)
def test_mcnemar_exact_p_on_known_tables(b, c, p):
    """p = 2·P(Binomial(b + c, 1/2) ≤ min(b, c)), by hand; the trials where both agree do not count."""
    out = stats.mcnemar([1] * b + [-1] * c + [0] * 20)
    assert (out["n"], out["b"], out["c"]) == (b + c + 20, b, c)
    assert out["p"] == pytest.approx(p) and out["mean"] == pytest.approx((b - c) / (b + c + 20))


def test_mcnemar_interval_is_clopper_pearson_of_the_discordant_and_decides_as_the_test():
    out = stats.mcnemar([1] * 6 + [0] * 24)  # b = 6, c = 0: θ from 0.025^(1/6) to 1
    assert out["low"] == pytest.approx(6 * (2 * 0.025 ** (1 / 6) - 1) / 30) and out["high"] == pytest.approx(6 / 30)
    for b in range(16):
        for c in range(16 - b):
            out = stats.mcnemar([1] * b + [-1] * c + [0] * 4)
            if b + c:
                assert out["low"] <= out["mean"] <= out["high"]
                assert (out["low"] > 0 or out["high"] < 0) == (out["p"] <= 0.05), (b, c)
            else:
                assert out["p"] == 1.0 and math.isnan(out["low"])


def test_mcnemar_mde_is_the_best_case_power():
    """Six discordant trials all one way are the fewest that reach p ≤ 0.05; at the MDE Δ the chance that
    Binomial(n, Δ) reaches 6 is 0.8, so the test (with c = 0) rejects with power 0.8. Six trials can barely do it."""
    for n in (6, 30, 80):
        mde = stats.mcnemar([0] * n)["mde"]
        assert scipy_stats.binom.sf(5, n, mde) == pytest.approx(0.8)
    assert stats.mcnemar([0] * 6)["mde"] == pytest.approx(0.8 ** (1 / 6))
    assert math.isnan(stats.mcnemar([0] * 5)["mde"])


def test_mcnemar_refuses_outcomes_that_are_not_paired_zeros_and_ones():
    with pytest.raises(ValueError, match="paired 0/1 outcomes"):
        stats.mcnemar([0.5, 1.0])


def per_seed(cells: dict) -> pd.DataFrame:
    """A per-unit table like ``stats.summarise``'s: {key: [value per seed]}."""
    frame = pd.DataFrame(cells).T
    frame.columns = [f"seed {s}" for s in frame.columns]
    return frame


def bh(p: list[float]) -> list[float]:
    """Benjamini-Hochberg by its definition: q_(i) = min over j ≥ i of m·p_(j)/j."""
    m, order = len(p), np.argsort(p)
    q = np.minimum.accumulate([m * p[i] / (r + 1) for r, i in enumerate(order)][::-1])[::-1]
    return list(np.minimum(q, 1)[np.argsort(order)])


def test_claims_adjust_each_family_by_benjamini_hochberg():
    worse = [0.0, 0.0, 0.0, 0.0]
    cells = {
        "w": worse,
        "a": [0.1, 0.12, 0.09, 0.11],
        "b": [0.1, 0.3, 0.05, 0.2],
        "c": [0.1, 0.03, 0.17, 0.1],
        "d": [0.2, -0.1, 0.3, 0.0],
    }
    comparisons = [stats.Comparison("one", f"{k} above w", k, "w") for k in "abcd"]
    comparisons.append(stats.Comparison("alone", "c above w, alone", "c", "w"))
    out = stats.claims(per_seed(cells), comparisons).set_index("claim")
    family = out[out.family == "one"]
    assert list(family.p) == pytest.approx([scipy_stats.ttest_1samp(cells[k], 0).pvalue for k in "abcd"])
    assert list(family.q) == pytest.approx(bh(list(family.p)))
    assert out.loc["c above w, alone", "q"] == pytest.approx(out.loc["c above w, alone", "p"])  # a family of one
    assert out.loc["a above w", "our run"] == "holds"
    # c's own interval excludes 0 (p ≤ 0.05), but beside b and d its q does not: the decision is BH-adjusted
    assert out.loc["c above w", "low"] > 0 and out.loc["c above w", "p"] < 0.05 < out.loc["c above w", "q"]
    assert out.loc["c above w", "our run"] == "undecided" and out.loc["c above w, alone", "our run"] == "holds"
    assert set(out["our run"]) <= set(stats.VERDICTS)


def test_claims_read_the_sign_and_report_in_points():
    cells = {"low": [-0.10, -0.12, -0.11], "high": [-0.01, -0.02, -0.015]}
    out = stats.claims(
        per_seed(cells),
        [
            stats.Comparison("f", "high above low", "high", "low"),
            stats.Comparison("g", "low above high", "low", "high"),
        ],
    ).set_index("claim")
    assert list(out["our run"]) == ["holds", "fails"]
    row = out.loc["high above low"]
    assert (row.better, row.worse, row.difference, row.n) == (
        pytest.approx(-1.5),
        pytest.approx(-11.0),
        pytest.approx(9.5),
        3,
    )
    assert row.low < 9.5 < row.high and row.mde > 0


def test_pairing_decides_a_constant_offset_that_the_seed_spread_hides():
    """Each seed's better cell is 0.5 points above its worse cell, while the seeds spread over 8 points: unpaired, the
    gap is far inside the spread (and Welch's test sees nothing); paired, every difference is the same."""
    worse = [-0.10, -0.02, -0.06]
    better = [w + 0.005 for w in worse]
    assert scipy_stats.ttest_ind(better, worse, equal_var=False).pvalue > 0.5
    out = stats.claims(per_seed({"b": better, "w": worse}), [stats.Comparison("f", "b above w", "b", "w")]).iloc[0]
    assert out["our run"] == "holds" and out.difference == pytest.approx(0.5)


def test_claims_pair_only_the_seeds_both_cells_have():
    cells = {"b": [0.3, 0.1, 0.2, math.nan], "w": [0.0, 0.0, math.nan, 5.0]}
    out = stats.claims(per_seed(cells), [stats.Comparison("f", "b above w", "b", "w")], scale=1.0).iloc[0]
    assert out.n == 2 and out.difference == pytest.approx(0.2)  # seeds 0 and 1
    assert out.better == pytest.approx(0.2) and out.worse == pytest.approx(5 / 3)  # each cell's own mean


def test_one_seed_is_undecided_without_a_p():
    out = stats.claims(
        per_seed({"b": [0.3], "w": [0.0]}), [stats.Comparison("f", "b above w", "b", "w")], paper={"b": 1.0, "w": 0.0}
    ).iloc[0]
    assert out["our run"] == "undecided" and math.isnan(out.p) and math.isnan(out.q)
    assert out.paper == "holds" and out.agrees is not None and not out.agrees


def test_tally_counts_verdicts_and_the_undecided_mde():
    table = pd.DataFrame({"our run": ["holds", "undecided", "undecided", "fails"], "mde": [0.5, 1.25, 3.0, 0.1]})
    assert stats.tally(table) == "1 hold, 2 undecided (MDE 1.25-3.00 points), 1 fail (of 4)"
    assert stats.tally(table.iloc[:2], "log10") == "1 hold, 1 undecided (MDE 1.25 log10), 0 fail (of 2)"


def test_a_repeated_seed_is_an_error_not_a_silent_average():
    df = pd.DataFrame([{"precision": "FP", "attack": "gc", "seed": s, "drop": d} for s, d in enumerate([-0.10, -0.12])])
    with pytest.raises(ValueError, match=r"repeat a \(precision, attack, seed\) cell"):
        stats.summarise(pd.concat([df, df.iloc[:1]]), ["precision", "attack"])


@pytest.mark.parametrize(
    "k, n, low, high",
    [
        (0, 8, 0.0, 0.3244),
        (8, 8, 0.6756, 1.0),
        (4, 8, 0.2152, 0.7848),
    ],
)
def test_wilson_interval_matches_published_values(k, n, low, high):
    lo, hi = stats.wilson(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


@pytest.mark.parametrize("n", [1, 3, 6, 8, 80])
def test_wilson_interval_contains_the_rate_exactly(n):
    for k in range(n + 1):
        low, high = stats.wilson(k, n)
        assert 0 <= low <= k / n <= high <= 1


@pytest.mark.parametrize("k, n", [(61, 80), (3, 12), (1, 2)])
def test_wilson_bounds_solve_the_score_equation(k, n):
    """Each bound p solves (k/n − p)² = z² p (1 − p) / n, the inverted score test."""
    for p in stats.wilson(k, n):
        assert (k / n - p) ** 2 == pytest.approx(stats.Z95**2 * p * (1 - p) / n, abs=1e-12)


@pytest.mark.parametrize("k, n", [(-1, 5), (6, 5), (0, 0)])
def test_wilson_rejects_impossible_counts(k, n):
    with pytest.raises(ValueError, match="0 ≤ k ≤ n"):
        stats.wilson(k, n)


def test_rate_gives_count_rate_and_interval():
    high = stats.rate(18, 20)
    assert (high["k"], high["n"], high["rate"]) == (18, 20, 0.9) and high["low"] < 0.9 < high["high"]
