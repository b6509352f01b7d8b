"""Notebook 01's tables (``qlib.experiments.ptq``): Table 1's summary and claim verdicts, Table 2's summary, on
hand-made runs with known answers."""

import pandas as pd
import pytest

from qlib.experiments import ptq
from qlib.stats import VERDICTS


def runs(drops: dict) -> pd.DataFrame:
    """Rows like the attack grid's (with precision) from {(precision, attack): [drop per seed]}."""
    return pd.DataFrame(
        [
            {"precision": p, "attack": a, "seed": s, "drop": d, "clean_acc": 0.9, "scheme": p}
            for (p, a), ds in drops.items()
            for s, d in enumerate(ds)
        ]
    )


def test_table1_summary_and_claims():
    df = runs(
        {
            ("FP", "gc"): [-0.10, -0.12, -0.11],
            ("8-bit", "gc"): [-0.08, -0.09, -0.085],
            ("4-bit", "gc"): [-0.05, -0.06, -0.055],
            ("1-bit", "gc"): [-0.05, -0.07, -0.03],
        }
    )
    s = ptq.summary(df)
    fp = s[s.precision == "FP"].iloc[0]
    assert fp["mean"] == pytest.approx(-0.11) and fp["std"] == pytest.approx(0.01) and fp["paper"] == -0.1373
    assert fp["clean_acc"] == pytest.approx(0.9)
    assert list(fp[["seed 0", "seed 1", "seed 2"]]) == [-0.10, -0.12, -0.11]
    claims = ptq.claims(s).set_index("claim")
    assert claims.loc["gc: PTQ 4-bit more robust than FP", "our run"] == "holds"
    assert claims.loc["gc: PTQ 1-bit more robust than 4-bit", "our run"] == "undecided"
    assert claims.loc["gc: PTQ 4-bit more robust than 8-bit", "our run"] == "holds"
    assert set(claims["paper"]) == {"holds"}  # the paper's Table 1 has every GC claim hold
    assert set(claims["our run"]) <= set(VERDICTS)


def test_table2_summary_sits_beside_the_paper():
    df = pd.DataFrame(
        [
            {"precision": p, "seed": s, "drop": -0.1 * (i + 1), "eps_w": 0.01 * (i + 1), "drop_vs_ptq": 0.0}
            for i, p in enumerate(["FP", "8-bit", "4-bit", "1-bit"])
            for s in range(2)
        ]
    )
    s = ptq.table2_summary(df).set_index("precision")
    assert s.loc["4-bit", "drop"] == pytest.approx(-0.3) and s.loc["4-bit", "eps_w"] == pytest.approx(0.03)
    assert (s.loc["1-bit", "paper_drop"], s.loc["1-bit", "paper_eps_w"]) == (-0.3007, 0.57)


def test_a_repeated_seed_is_an_error_not_a_silent_average():
    df = runs({("FP", "gc"): [-0.10, -0.12]})
    with pytest.raises(ValueError, match=r"repeat a \(precision, attack, seed\) cell"):
        ptq.summary(pd.concat([df, df.iloc[:1]]))


def test_claims_say_whether_they_agree_with_the_paper():
    df = runs(
        {
            ("FP", "gc"): [-0.10, -0.12, -0.11],
            ("8-bit", "gc"): [-0.15, -0.16, -0.155],
            ("4-bit", "gc"): [-0.05, -0.06, -0.055],
            ("1-bit", "gc"): [-0.05, -0.07, -0.03],
        }
    )
    claims = ptq.claims(ptq.summary(df)).set_index("claim")
    assert claims.loc["gc: PTQ 4-bit more robust than FP", "agrees"]
    assert claims.loc["gc: PTQ 8-bit more robust than FP", "our run"] == "fails"
    assert not claims.loc["gc: PTQ 8-bit more robust than FP", "agrees"]
