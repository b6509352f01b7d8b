"""The tables' summaries and claim verdicts, on hand-made runs with known answers."""

import pandas as pd
import pytest

from qlib import tables


def runs(drops: dict) -> pd.DataFrame:
    """Rows like attack_drops' (with precision) from {(precision, attack): [drop per seed]}."""
    return pd.DataFrame([{"precision": p, "attack": a, "seed": s, "drop": d, "clean_acc": 0.9, "scheme": p}
                         for (p, a), ds in drops.items() for s, d in enumerate(ds)])


def test_verdict_needs_the_gap_to_exceed_the_noise():
    row = lambda m, s: pd.Series({"mean": m, "std": s})
    assert tables.verdict(row(-0.01, 0.002), row(-0.05, 0.003)) == "holds"
    assert tables.verdict(row(-0.05, 0.002), row(-0.01, 0.003)) == "fails"
    assert tables.verdict(row(-0.01, 0.02), row(-0.02, 0.001)) == "within noise"


def test_table1_summary_and_claims():
    df = runs({("FP", "gc"): [-0.10, -0.12, -0.11], ("8-bit", "gc"): [-0.08, -0.09, -0.085],
               ("4-bit", "gc"): [-0.05, -0.06, -0.055], ("1-bit", "gc"): [-0.05, -0.07, -0.03]})
    s = tables.table1_summary(df)
    fp = s[s.precision == "FP"].iloc[0]
    assert fp["mean"] == pytest.approx(-0.11) and fp["std"] == pytest.approx(0.01) and fp["paper"] == -0.1373
    assert list(fp[["seed 0", "seed 1", "seed 2"]]) == [-0.10, -0.12, -0.11]
    claims = tables.table1_claims(s).set_index("claim")
    assert claims.loc["gc: PTQ 4-bit more robust than FP", "our run"] == "holds"
    assert claims.loc["gc: PTQ 1-bit more robust than 4-bit", "our run"] == "within noise"
    assert claims.loc["gc: PTQ 4-bit more robust than 8-bit", "our run"] == "holds"
    assert set(claims["paper"]) == {"holds"}  # the paper's Table 1 has every GC claim hold
    assert set(claims["our run"]) <= set(tables.VERDICTS)


def test_table2_summary_sits_beside_the_paper():
    df = pd.DataFrame([{"precision": p, "seed": s, "drop": -0.1 * (i + 1), "eps_w": 0.01 * (i + 1), "drop_vs_ptq": 0.0}
                       for i, p in enumerate(["FP", "8-bit", "4-bit", "1-bit"]) for s in range(2)])
    s = tables.table2_summary(df).set_index("precision")
    assert s.loc["4-bit", "drop"] == pytest.approx(-0.3) and s.loc["4-bit", "eps_w"] == pytest.approx(0.03)
    assert (s.loc["1-bit", "paper_drop"], s.loc["1-bit", "paper_eps_w"]) == (-0.3007, 0.57)


def test_a_repeated_seed_is_an_error_not_a_silent_average():
    df = runs({("FP", "gc"): [-0.10, -0.12]})
    with pytest.raises(ValueError, match=r"repeat a \(precision, attack, seed\) cell"):
        tables.drop_summary(pd.concat([df, df.iloc[:1]]), ["precision", "attack"])


def test_claims_say_whether_they_agree_with_the_paper():
    df = runs({("FP", "gc"): [-0.10, -0.12, -0.11], ("8-bit", "gc"): [-0.15, -0.16, -0.155],
               ("4-bit", "gc"): [-0.05, -0.06, -0.055], ("1-bit", "gc"): [-0.05, -0.07, -0.03]})
    claims = tables.table1_claims(tables.table1_summary(df)).set_index("claim")
    assert claims.loc["gc: PTQ 4-bit more robust than FP", "agrees"]
    assert claims.loc["gc: PTQ 8-bit more robust than FP", "our run"] == "fails"
    assert not claims.loc["gc: PTQ 8-bit more robust than FP", "agrees"]
