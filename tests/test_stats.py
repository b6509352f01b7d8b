"""The statistics every table uses (``qlib.stats``): the verdict on means, the per-seed summary, the Wilson interval
and the verdict on rates, on hand-made numbers with known answers."""

import pandas as pd
import pytest

from qlib import stats


def test_verdict_needs_the_gap_to_exceed_the_noise():
    row = lambda m, s: pd.Series({"mean": m, "std": s})
    assert stats.verdict_means(row(-0.01, 0.002), row(-0.05, 0.003)) == "holds"
    assert stats.verdict_means(row(-0.05, 0.002), row(-0.01, 0.003)) == "fails"
    assert stats.verdict_means(row(-0.01, 0.02), row(-0.02, 0.001)) == "within noise"


def test_one_seed_gives_no_verdict_on_means():
    row = lambda m, n: pd.Series({"mean": m, "std": 0.0, "n": n})
    assert stats.verdict_means(row(-0.01, 1), row(-0.05, 3)) == stats.ONE_SEED
    assert stats.verdict_means(row(-0.01, 2), row(-0.05, 2)) == "holds"


def test_a_repeated_seed_is_an_error_not_a_silent_average():
    df = pd.DataFrame([{"precision": "FP", "attack": "gc", "seed": s, "drop": d} for s, d in enumerate([-0.10, -0.12])])
    with pytest.raises(ValueError, match=r"repeat a \(precision, attack, seed\) cell"):
        stats.summarise(pd.concat([df, df.iloc[:1]]), ["precision", "attack"])


@pytest.mark.parametrize("k, n, low, high", [
    (0, 8, 0.0, 0.3244), (8, 8, 0.6756, 1.0), (4, 8, 0.2152, 0.7848),
])
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
        assert (k / n - p) ** 2 == pytest.approx(stats.Z95 ** 2 * p * (1 - p) / n, abs=1e-12)


@pytest.mark.parametrize("k, n", [(-1, 5), (6, 5), (0, 0)])
def test_wilson_rejects_impossible_counts(k, n):
    with pytest.raises(ValueError, match="0 ≤ k ≤ n"):
        stats.wilson(k, n)


def test_rate_verdicts_need_the_intervals_apart():
    high, low, near = stats.rate(18, 20), stats.rate(2, 20), stats.rate(4, 20)
    assert (high["k"], high["n"], high["rate"]) == (18, 20, 0.9) and high["low"] < 0.9 < high["high"]
    assert stats.verdict_rates(high, low) == "holds"
    assert stats.verdict_rates(low, high) == "fails"
    assert stats.verdict_rates(near, low) == "within noise"
