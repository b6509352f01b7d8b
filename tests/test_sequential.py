"""The group-sequential design of the primary comparisons (``qlib.stats``: repeated confidence intervals with
Lan-DeMets O'Brien-Fleming boundaries, the equivalence verdict, the seeds for power): its boundaries against the
published ones, and its error rates across looks by simulating whole studies."""

import numpy as np
import pytest
from scipy.stats import binomtest

from qlib import stats

LOOKS = [5, 10, 15, 20]  # the cpu preset's design: groups of 5 seeds up to 20
STUDIES = 4000  # ≥ 2,000 simulated studies per rate; the binomial standard error of a 5% rate is then 0.34 points


def simulate(mean: float, sd: float, delta: float, looks=LOOKS, alpha: float = stats.ALPHA, seed: int = 0):
    """The verdicts and seeds used of ``STUDIES`` studies whose paired differences are N(``mean``, ``sd``)."""
    rng = np.random.default_rng(seed)
    out = [stats.sequential(rng.normal(mean, sd, looks[-1]), looks, delta, alpha)[-1] for _ in range(STUDIES)]
    return np.array([r["verdict"] for r in out]), np.array([r["n"] for r in out])


def test_boundaries_are_the_published_obrien_fleming_spending_boundaries():
    """Four equally spaced looks at two-sided α 0.05: 4.333, 2.963, 2.359, 2.014 (Jennison & Turnbull 2000,
    Table 7.6 / gsDesign); one look: the fixed test's 1.96."""
    assert stats.spending_bounds([0.25, 0.5, 0.75, 1.0]) == pytest.approx([4.333, 2.963, 2.359, 2.014], abs=2e-3)
    assert stats.spending_bounds([1.0]) == pytest.approx([1.959964], abs=1e-6)


def test_spending_adds_up_to_alpha_and_refuses_bad_fractions():
    assert stats.spending(1.0) == pytest.approx(stats.ALPHA)
    assert stats.spending(0.25) < stats.spending(0.5) < stats.spending(1.0)
    for bad in ([0.5, 0.4, 1.0], [0.5, 0.9], [0.0, 1.0]):
        with pytest.raises(ValueError, match="information fractions"):
            stats.spending_bounds(bad)


def test_a_null_effect_is_declared_at_most_at_the_nominal_rate_over_all_looks():
    """Zero true difference: "holds" or "fails" in at most α of the studies (two binomial standard errors of slack),
    and the design does look more than once (it is not a fixed test in disguise)."""
    verdicts, used = simulate(0.0, 1.0, delta=0.5)
    declared = np.isin(verdicts, ["holds", "fails"]).mean()
    assert declared <= stats.ALPHA + 2 * np.sqrt(stats.ALPHA * (1 - stats.ALPHA) / STUDIES)
    assert declared > 0.01  # the level is used, not wasted
    assert len(set(used)) > 1


@pytest.mark.parametrize("mean", [-0.5, 0.5])
def test_an_effect_of_delta_is_called_negligible_at_most_at_the_nominal_rate(mean):
    verdicts, _ = simulate(mean, 1.0, delta=0.5, seed=1)
    assert (verdicts == "negligible").mean() <= stats.ALPHA + 2 * np.sqrt(stats.ALPHA * (1 - stats.ALPHA) / STUDIES)


def test_a_bonferroni_share_of_alpha_keeps_its_share():
    """A claim of m = 3 primary comparisons tests each at α/3: the null rate of one comparison stays below α/3."""
    verdicts, _ = simulate(0.0, 1.0, delta=0.5, alpha=stats.ALPHA / 3, seed=2)
    level = stats.ALPHA / 3
    assert np.isin(verdicts, ["holds", "fails"]).mean() <= level + 2 * np.sqrt(level * (1 - level) / STUDIES)


def test_the_seeds_for_power_deliver_that_power_and_stop_early_on_large_effects():
    """At the sd where the fixed test needs 18 seeds for power 0.9 at δ, the design (cap 20) finds a true δ in ≥ 85%
    of studies (a few percent below 0.9 is the price of the early looks); an effect 3× larger stops mostly at 10."""
    delta = 1.0
    sd = next(s for s in np.arange(0.5, 2, 0.01) if stats.seeds_for_power(s, delta) == 18)
    verdicts, _ = simulate(delta, sd, delta=0.1, seed=3)
    assert (verdicts == "holds").mean() >= 0.85
    verdicts, used = simulate(3 * delta, sd, delta=0.1, seed=4)
    assert (verdicts == "holds").mean() > 0.99 and np.median(used) <= 10


def test_no_effect_with_a_small_spread_is_negligible_at_the_cap():
    verdicts, used = simulate(0.0, 0.1, delta=1.0, seed=5)
    assert (verdicts == "negligible").mean() > 0.9 and set(used[verdicts == "negligible"]) == {LOOKS[-1]}


def test_an_effect_between_zero_and_delta_settles_on_holds_not_on_a_race():
    """A true 0.5 with δ 1 is real and negligible at once: the design keeps looking until the interval excludes
    zero, so nearly every study says holds (the size: < δ or unclear), none negligible before the cap."""
    verdicts, used = simulate(0.5, 0.4, delta=1.0, seed=6)
    assert (verdicts == "holds").mean() > 0.9
    assert not ((verdicts == "negligible") & (used < LOOKS[-1])).any()


def test_seeds_for_power_matches_the_normal_approximation_plus_the_t_correction():
    """n ≈ ((z_0.975 + z_0.9)·sd/δ)² = 10.5 at sd = δ; the t test needs a seed or two more."""
    assert stats.seeds_for_power(1.0, 1.0) in (12, 13)
    assert stats.seeds_for_power(0.0, 1.0) == 2
    assert stats.seeds_for_power(100.0, 1.0, cap=50) is None
    assert stats.seeds_for_power(0.5, 1.0) < stats.seeds_for_power(1.0, 1.0) < stats.seeds_for_power(2.0, 1.0)


def test_sequential_stops_at_the_first_decided_look_and_reports_each_look():
    d = np.r_[np.full(5, 10.0) + np.linspace(-0.1, 0.1, 5), np.zeros(15)]
    looks = stats.sequential(d, LOOKS, delta=1.0)
    assert [r["look"] for r in looks] == [1] and looks[0]["verdict"] == "holds" and looks[0]["n"] == 5
    noisy = np.random.default_rng(0).normal(0, 5, 20)
    looks = stats.sequential(noisy, LOOKS, delta=0.1)
    assert [r["look"] for r in looks] == [1, 2, 3, 4] and looks[-1]["verdict"] == "undecided"
    assert [r["verdict"] for r in looks[:-1]] == [None, None, None]
    assert all(a["bound"] > b["bound"] for a, b in zip(looks, looks[1:]))


# -- the targeted comparisons: the exact McNemar test on a fixed number of trials, Newcombe's interval --

TRIALS = 60


def simulate_trials(
    worse: float, better: float, together: float, delta: float = 30.0, alpha: float = stats.ALPHA, seed: int = 0
) -> np.ndarray:
    """The verdicts of ``STUDIES`` studies of ``TRIALS`` trials each, where worse succeeds with probability
    ``worse``, better with ``better``, both with ``together``."""
    rng = np.random.default_rng(seed)
    cells = np.array([together, worse - together, better - together, 1 - worse - better + together])  # 11, 10, 01, 00
    outcomes = np.array([(1, 1), (1, 0), (0, 1), (0, 0)])
    return np.array(
        [stats.paired_rates(outcomes[rng.choice(4, TRIALS, p=cells)], delta, alpha)["verdict"] for _ in range(STUDIES)]
    )


@pytest.mark.parametrize("rates", [(0.5, 0.5, 0.3), (0.75, 0.75, 0.5), (0.2, 0.2, 0.0)])
def test_a_targeted_null_is_declared_at_most_at_the_nominal_rate(rates):
    declared = np.isin(simulate_trials(*rates), ["holds", "fails"]).mean()
    assert declared <= stats.ALPHA + 2 * np.sqrt(stats.ALPHA * (1 - stats.ALPHA) / STUDIES)


@pytest.mark.parametrize("rates", [(0.6, 0.3, 0.25), (0.9, 0.6, 0.55)])
def test_a_targeted_difference_of_delta_is_called_negligible_at_most_at_the_nominal_rate(rates):
    """A true difference of exactly δ = 30 points (here on fewer trials than equivalence would need, where the
    interval's coverage matters most) is called negligible in at most α of the studies."""
    negligible = (simulate_trials(*rates) == "negligible").mean()
    assert negligible <= stats.ALPHA + 2 * np.sqrt(stats.ALPHA * (1 - stats.ALPHA) / STUDIES)


@pytest.mark.parametrize("rates", [(0.75, 0.1, 0.05), (0.5, 0.5, 0.3), (0.3, 0.1, 0.0)])
def test_newcombes_interval_covers_the_true_difference_and_the_exact_test_decides(rates):
    """Over simulated studies of 60 trials the 95% interval holds the true difference (worse's rate − better's) in
    at least 95% of them, less two binomial standard errors; the verdict follows McNemar's exact p: 9 trials of 60
    all one way holds (or fails), 11 of 23 with 9 against 2 (p = 0.065) is undecided; a tight null is negligible."""
    rng = np.random.default_rng(2)
    worse, better, together = rates
    cells = np.array([together, worse - together, better - together, 1 - worse - better + together])
    outcomes = np.array([(1, 1), (1, 0), (0, 1), (0, 0)])
    covered = []
    for _ in range(STUDIES):
        r = stats.paired_rates(outcomes[rng.choice(4, TRIALS, p=cells)], delta=30.0)
        covered.append(r["low"] <= 100 * (worse - better) <= r["high"])
    assert np.mean(covered) >= 1 - stats.ALPHA - 2 * np.sqrt(stats.ALPHA * (1 - stats.ALPHA) / STUDIES)
    r = stats.paired_rates([(1, 1)] * 12 + [(1, 0)] * 9 + [(0, 1)] * 2, delta=30.0)
    assert r["mean"] == pytest.approx(100 * 7 / 23) and r["low"] < r["mean"] < r["high"]
    assert r["p"] == pytest.approx(0.0654, abs=1e-4) and r["verdict"] == "undecided"
    assert stats.paired_rates([(1, 0)] * 9 + [(0, 0)] * 51, delta=30.0)["verdict"] == "holds"
    assert stats.paired_rates([(0, 1)] * 9 + [(0, 0)] * 51, delta=30.0)["verdict"] == "fails"
    assert stats.paired_rates([(0, 0)] * 200 + [(1, 1)] * 100, delta=5.0)["verdict"] == "negligible"
    with pytest.raises(ValueError, match="0/1 outcomes"):
        stats.paired_rates([(2, 0)], delta=30.0)


def test_the_trials_for_power_deliver_that_power():
    """At a 50% share of discordant trials and δ 30 points: the exact power at the planned trials is ≥ 0.9 and below
    it one trial fewer; a simulation of the test agrees within its error."""
    n = stats.trials_for_power(0.5, 30.0, stats.ALPHA)
    assert stats.mcnemar_power(n, 0.5, 0.3) >= stats.DESIGN_POWER > stats.mcnemar_power(n - 1, 0.5, 0.3)
    rng = np.random.default_rng(1)
    rejected = []
    for _ in range(STUDIES):
        kind = rng.choice(3, n, p=[0.4, 0.1, 0.5])  # b, c, concordant: 0.4 − 0.1 = 0.3, discordant 0.5
        b, c = int((kind == 0).sum()), int((kind == 1).sum())
        rejected.append(b + c > 0 and b > c and binomtest(b, b + c, 0.5).pvalue <= stats.ALPHA)
    assert np.mean(rejected) == pytest.approx(stats.mcnemar_power(n, 0.5, 0.3), abs=3 * np.sqrt(0.1 * 0.9 / STUDIES))
    assert stats.trials_for_power(0.0, 30.0) == stats.trials_for_power(0.3, 30.0)  # at least δ of the trials differ
