"""The targeted experiment's runner and statistics: Wilson intervals, verdicts, the grid on the smoke preset."""

import math
from dataclasses import replace

import pandas as pd
import pytest

from qlib import targeted
from qlib.presets import load_preset
from qlib.study import FP, load_data


@pytest.mark.parametrize("k, n, low, high", [
    (0, 8, 0.0, 0.3244), (8, 8, 0.6756, 1.0), (4, 8, 0.2152, 0.7848),
])
def test_wilson_interval_matches_published_values(k, n, low, high):
    lo, hi = targeted.wilson(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


@pytest.mark.parametrize("n", [1, 3, 6, 8, 80])
def test_wilson_interval_contains_the_rate_exactly(n):
    for k in range(n + 1):
        low, high = targeted.wilson(k, n)
        assert 0 <= low <= k / n <= high <= 1


@pytest.mark.parametrize("k, n", [(61, 80), (3, 12), (1, 2)])
def test_wilson_bounds_solve_the_score_equation(k, n):
    """Each bound p solves (k/n − p)² = z² p (1 − p) / n, the inverted score test."""
    for p in targeted.wilson(k, n):
        assert (k / n - p) ** 2 == pytest.approx(targeted.Z95 ** 2 * p * (1 - p) / n, abs=1e-12)


@pytest.mark.parametrize("k, n", [(-1, 5), (6, 5), (0, 0)])
def test_wilson_rejects_impossible_counts(k, n):
    with pytest.raises(ValueError, match="0 ≤ k ≤ n"):
        targeted.wilson(k, n)


def runs(rates: dict, n: int = 20) -> pd.DataFrame:
    """Synthetic trials: ``rates`` maps (precision, poisons) to the number of successes out of ``n``."""
    rows = []
    for (prec, kind), k in rates.items():
        for i in range(n):
            rows.append({"target": i % 4, "seed": i // 4, "precision": prec, "poisons": kind, "acc": 0.8,
                         "success": i < k, "misclassified": i < k, "p_adv": 0.9 if i < k else 0.01})
    return pd.DataFrame(rows)


def test_summary_and_verdicts():
    df = runs({("FP", "none"): 0, ("FP", "oblivious"): 18, ("1-bit", "none"): 0, ("1-bit", "oblivious"): 2,
               ("1-bit", "aware"): 4})
    summary = targeted.success_summary(df).set_index(["precision", "poisons"])
    fp = summary.loc[("FP", "oblivious")]
    assert (fp.success, fp.n, fp.success_rate) == (18, 20, 0.9)
    assert fp.success_low < 0.9 < fp.success_high
    assert targeted.compare(fp, summary.loc[("1-bit", "oblivious")]) == "holds"
    assert targeted.compare(summary.loc[("1-bit", "oblivious")], fp) == "fails"
    assert targeted.compare(summary.loc[("1-bit", "aware")], summary.loc[("1-bit", "oblivious")]) == "within noise"


def test_pull_claims_read_the_direction_right():
    df = runs({("FP", "none"): 0, ("FP", "oblivious"): 20, **{(p, k): 0 for p in ("1-bit", "3-bit", "4-bit", "5-bit", "8-bit")
                                                             for k in ("none", "oblivious", "aware")}})
    df.loc[(df.precision == "FP") & (df.poisons == "oblivious"), "p_adv"] = [0.5 + 0.02 * i for i in range(20)]
    claims = targeted.targeted_claims(targeted.success_summary(df), targeted.adversarial_shift(df))
    verdict = claims.set_index(["outcome", "claim"])["our run"]
    assert verdict[("pull", "FP: poisons raise p(adv)")] == "holds"
    assert verdict[("pull", "QAT 1-bit lowers the FP pull")] == "holds"
    assert verdict[("success", "QAT 1-bit lowers the FP rate")] == "holds"
    assert verdict[("misclassified", "QAT 1-bit: aware beats oblivious")] == "within noise"
    assert verdict[("pull", "QAT 1-bit: aware pulls more than oblivious")] == "within noise"


def test_adversarial_shift_pairs_each_trial_with_its_clean_victim():
    df = runs({("FP", "none"): 0, ("FP", "oblivious"): 5})
    shift = targeted.adversarial_shift(df).iloc[0]
    assert shift.rose == 5 and shift.n == 20
    assert shift.log10_ratio == pytest.approx(5 * math.log10(0.9 / 0.01) / 20)  # unchanged in the other 15


@pytest.fixture(scope="module", autouse=True)
def own_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QLIB_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def smoke_runs():
    cfg = replace(load_preset("smoke"), targets=2)
    return cfg, targeted.targeted(cfg, progress=False)


def test_the_grid_on_the_smoke_preset(smoke_runs):
    cfg, df = smoke_runs
    per_trial = len(targeted.PRECISIONS) * 2 + len(targeted.QAT_SCHEMES)  # none + oblivious everywhere, aware on QAT
    assert len(df) == cfg.targets * len(cfg.targeted_seeds) * per_trial == 34
    assert set(df.precision) == {"FP", "1-bit", "3-bit", "4-bit", "5-bit", "8-bit"}
    assert not ((df.poisons == "aware") & (df.precision == "FP")).any()
    assert (df.adversarial_class != df.true_class).all()
    assert df.success.eq(df.pred == df.adversarial_class).all() and df.misclassified.eq(df.pred != df.true_class).all()
    claims = targeted.targeted_claims(targeted.success_summary(df), targeted.adversarial_shift(df))
    assert len(claims) == 3 * (1 + 2 * len(targeted.QAT_SCHEMES))
    assert set(claims["our run"]) <= {"holds", "within noise", "fails"}


def test_targets_are_classified_correctly_by_the_surrogate_and_poisons_come_from_the_adversarial_class(smoke_runs):
    cfg, df = smoke_runs
    cfg = targeted.targeted_preset(cfg)
    train, test = load_data(cfg)
    chosen = targeted.choose_targets(cfg, train, test)
    assert chosen.target_index.tolist() == df.drop_duplicates("target").target_index.tolist()
    surrogate = targeted.trained_model(cfg, cfg.targeted_seeds[0], FP, train, test, curve=False)[0].eval()
    assert (surrogate(test.x[chosen.target_index.tolist()]).argmax(1) == test.y[chosen.target_index.tolist()]).all()
    t = next(chosen.itertuples())
    nu, _ = targeted.poison(cfg, cfg.targeted_seeds[0], t, FP, train, test)
    assert (train.y[nu.indices] == t.adversarial_class).all()
    assert len(nu) == round(cfg.targeted_eps_d * len(train))
    assert nu.provenance["target_index"] == t.target_index


def test_a_clean_victim_is_read_per_adversarial_class(smoke_runs):
    """The same clean victim and target with another adversarial class is another cached reading."""
    cfg, df = smoke_runs
    cfg = targeted.targeted_preset(cfg)
    train, test = load_data(cfg)
    t = next(targeted.choose_targets(cfg, train, test).itertuples())
    other = t._replace(adversarial_class=(t.adversarial_class + 1) % 10)
    a = targeted.victim(cfg, cfg.targeted_seeds[0], FP, t, train, test, None)
    b = targeted.victim(cfg, cfg.targeted_seeds[0], FP, other, train, test, None)
    assert a["pred"] == b["pred"] and a["p_adv"] != b["p_adv"]


def test_trial_seeds_that_are_victim_seeds_are_refused():
    with pytest.raises(ValueError, match=r"seed\(s\) \[1000\] would train a surrogate"):
        targeted.targeted(replace(load_preset("smoke"), targeted_seeds=[0, 1000]), progress=False)


def test_too_many_targets_is_named():
    cfg = targeted.targeted_preset(replace(load_preset("smoke"), targets=10 ** 6))
    train, test = load_data(cfg)
    with pytest.raises(ValueError, match="targets=1000000 asks for more"):
        targeted.choose_targets(cfg, train, test)
