"""Notebook 05's targeted experiment (``qlib.experiments.targeted``): its summaries and paired verdicts on hand-made
trials, and its cells on the smoke preset (the Wilson interval and McNemar's test themselves: tests/test_stats.py)."""

import math

import pandas as pd
import pytest

from qlib import cells
from qlib.experiments import targeted
from qlib.paper import FP
from qlib.presets import load_preset
from qlib.settings import with_settings
from qlib.stats import VERDICTS


def runs(rates: dict, n: int = 20) -> pd.DataFrame:
    """Synthetic trials: ``rates`` maps (precision, poisons) to the number of successes out of ``n``."""
    rows = []
    for (prec, kind), k in rates.items():
        for i in range(n):
            rows.append(
                {
                    "target": i % 4,
                    "seed": i // 4,
                    "precision": prec,
                    "poisons": kind,
                    "acc": 0.8,
                    "success": i < k,
                    "misclassified": i < k,
                    "p_adv": 0.9 if i < k else 0.01,
                }
            )
    return pd.DataFrame(rows)


def test_summary_and_paired_verdicts():
    df = runs(
        {
            ("FP", "none"): 0,
            ("FP", "oblivious"): 18,
            ("1-bit", "none"): 0,
            ("1-bit", "oblivious"): 2,
            ("1-bit", "aware"): 4,
        }
    )
    summary = targeted.summary(df).set_index(["precision", "poisons"])
    fp = summary.loc[("FP", "oblivious")]
    assert (fp.success, fp.n, fp.success_rate) == (18, 20, 0.9)
    assert fp.success_low < 0.9 < fp.success_high
    claims = targeted.claims(df).set_index(["outcome", "claim"])
    lowers = claims.loc[("success", "QAT 1-bit lowers the FP rate")]  # 16 trials flip in FP only, none the other way
    assert (lowers["our run"], lowers.n, lowers.p) == ("holds", 20, pytest.approx(2 * 0.5**16))
    assert lowers.difference == pytest.approx(100 * 16 / 20) and lowers.low > 0
    assert claims.loc[("success", "QAT 1-bit: aware beats oblivious"), "p"] == pytest.approx(0.5)  # b = 2, c = 0
    assert claims.loc[("success", "QAT 1-bit: aware beats oblivious"), "our run"] == "undecided"
    assert set(claims.reset_index().family) == {
        "attack works in FP",
        "QAT more robust than FP",
        "QAA stronger than QOA",
    }


@pytest.mark.parametrize("overlap, verdict", [(True, "holds"), (False, "undecided")])
def test_rates_are_paired_by_trial(overlap, verdict):
    """10 of 20 FP victims against 4 of 20 1-bit victims: the Wilson intervals overlap either way. When the 1-bit
    successes are trials the FP victim also lost (b = 6, c = 0) McNemar decides; on other trials (b = 10, c = 4) not."""
    df = runs(
        {
            ("FP", "none"): 0,
            ("FP", "oblivious"): 10,
            ("1-bit", "none"): 0,
            ("1-bit", "oblivious"): 4,
            ("1-bit", "aware"): 0,
        }
    )
    if not overlap:
        one_bit = (df.precision == "1-bit") & (df.poisons == "oblivious")
        df.loc[one_bit, "success"] = df.loc[one_bit, "success"].to_numpy()[::-1]  # trials 16-19 instead of 0-3
    s = targeted.summary(df).set_index(["precision", "poisons"])
    assert s.loc[("FP", "oblivious"), "success_low"] < s.loc[("1-bit", "oblivious"), "success_high"]
    claim = targeted.claims(df).set_index(["outcome", "claim"]).loc[("success", "QAT 1-bit lowers the FP rate")]
    assert claim["our run"] == verdict and claim.difference == pytest.approx(30.0)


def test_pull_claims_read_the_direction_right():
    df = runs(
        {
            ("FP", "none"): 0,
            ("FP", "oblivious"): 20,
            **{
                (p, k): 0 for p in ("1-bit", "3-bit", "4-bit", "5-bit", "8-bit") for k in ("none", "oblivious", "aware")
            },
        }
    )
    df.loc[(df.precision == "FP") & (df.poisons == "oblivious"), "p_adv"] = [0.5 + 0.02 * i for i in range(20)]
    verdict = targeted.claims(df).set_index(["outcome", "claim"])["our run"]
    assert verdict[("pull", "FP: poisons raise p(adv)")] == "holds"
    assert verdict[("pull", "QAT 1-bit lowers the FP pull")] == "holds"
    assert verdict[("success", "QAT 1-bit lowers the FP rate")] == "holds"
    assert verdict[("misclassified", "QAT 1-bit: aware beats oblivious")] == "undecided"
    assert verdict[("pull", "QAT 1-bit: aware pulls more than oblivious")] == "undecided"


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
    cfg = with_settings(load_preset("smoke"), "targeted", targets=2)
    return cfg, targeted.run(cfg, progress=False)


def test_the_grid_on_the_smoke_preset(smoke_runs):
    cfg, df = smoke_runs
    per_trial = len(targeted.PRECISIONS) * 2 + len(targeted.QAT_SCHEMES)  # none + oblivious everywhere, aware on QAT
    t = cfg.experiments.targeted
    assert len(df) == t.targets * len(t.seeds) * per_trial == 34
    assert set(df.precision) == {"FP", "1-bit", "3-bit", "4-bit", "5-bit", "8-bit"}
    assert not ((df.poisons == "aware") & (df.precision == "FP")).any()
    assert (df.adversarial_class != df.true_class).all()
    assert df.success.eq(df.pred == df.adversarial_class).all() and df.misclassified.eq(df.pred != df.true_class).all()
    claims = targeted.claims(df)
    assert len(claims) == 3 * (1 + 2 * len(targeted.QAT_SCHEMES))
    assert set(claims["our run"]) <= set(VERDICTS) and (claims.n == 2).all()
    assert "2 targets × 1 seeds" in targeted.headline(cfg, df)


def test_targets_are_classified_correctly_by_the_surrogate_and_poisons_come_from_the_adversarial_class(smoke_runs):
    cfg, df = smoke_runs
    tcfg = targeted.preset(cfg)
    train, test = cells.load_data(tcfg)
    chosen = targeted.chosen(cfg, progress=False)
    index = [t["target_index"] for t in chosen]
    assert index == df.drop_duplicates("target").target_index.tolist()
    surrogate = cells.trained(tcfg, tcfg.experiments.targeted.seeds[0], FP, curve=False).value()[0].eval()
    assert (surrogate(test.x[index]).argmax(1) == test.y[index]).all()
    t = chosen[0]
    made = cells.poison(
        tcfg,
        "gradient_matching",
        tcfg.experiments.targeted.seeds[0],
        tcfg.experiments.targeted.eps_d,
        FP,
        target_index=t["target_index"],
        adversarial_class=t["adversarial_class"],
        curve=False,
    )
    assert made.id in {c.id for c in targeted.cells(cfg, chosen)}  # the poison the grid ran
    nu, _ = made.value()
    assert (train.y[nu.indices] == t["adversarial_class"]).all()
    assert len(nu) == round(tcfg.experiments.targeted.eps_d * len(train))
    assert nu.provenance["target_index"] == t["target_index"]


def test_a_clean_victim_is_read_per_adversarial_class(smoke_runs):
    """The same clean victim and target with another adversarial class is another cached reading."""
    cfg, df = smoke_runs
    tcfg = targeted.preset(cfg)
    t = targeted.chosen(cfg, progress=False)[0]
    other = (t["adversarial_class"] + 1) % 10
    a = cells.victim(tcfg, tcfg.experiments.targeted.seeds[0], FP, t["target_index"], t["adversarial_class"])
    b = cells.victim(tcfg, tcfg.experiments.targeted.seeds[0], FP, t["target_index"], other)
    assert a.id != b.id and a.inputs[0].id == b.inputs[0].id  # two readings of one victim
    a, b = a.value(), b.value()
    assert a["pred"] == b["pred"] and a["p_adv"] != b["p_adv"]


def test_targeted_bits_choose_the_qat_victims():
    """``experiments.targeted.bits`` are the QAT victims' precisions, among the paper's; FP always runs."""
    from qlib import paper
    from qlib.registry import ParameterError

    assert sorted(s.w_bits for s in targeted.QAT_SCHEMES) == sorted(paper.TARGETED_BITS)
    cfg = with_settings(load_preset("smoke"), "targeted", bits=[8, 1])
    chosen = [{"target": 0, "target_index": 3, "true_class": 0, "adversarial_class": 1}]
    entries = targeted.grid(cfg, chosen)
    assert {(e[0]["precision"], e[0]["poisons"]) for e in entries} == {
        ("FP", "none"),
        ("FP", "oblivious"),
        *((p, k) for p in ("1-bit", "8-bit") for k in ("none", "oblivious", "aware")),
    }
    with pytest.raises(
        ParameterError,
        match=(
            r"experiments.targeted.bits=\[2\]: allowed is a non-empty list of distinct bit-widths "
            r"among the paper's 1, 3, 4, 5, 8"
        ),
    ):
        load_preset("smoke", experiments={"targeted": {"bits": [2]}})


def test_trial_seeds_that_are_victim_seeds_are_refused():
    with pytest.raises(ValueError, match=r"seed\(s\) \[1000\] would train a surrogate"):
        targeted.run(with_settings(load_preset("smoke"), "targeted", seeds=[0, 1000]), progress=False)


def test_too_many_targets_is_named():
    with pytest.raises(ValueError, match="targets=1000000 asks for more"):
        targeted.chosen(with_settings(load_preset("smoke"), "targeted", targets=10**6), progress=False)
