"""Notebook 02's Table 3 (``qlib.experiments.qat``): summary, the ↓ column and claim verdicts on hand-made runs."""

import pandas as pd
import pytest

from qlib.experiments import qat
from qlib.stats import VERDICTS

SCHEMES = {
    "fp": ("fp", "fp"),
    "1W bnn": ("1W", "bnn"),
    "1W1A bnn": ("1W1A", "bnn"),
    "1W bnn++": ("1W", "bnn++"),
    "1W1A bnn++": ("1W1A", "bnn++"),
    "4W": ("4W", "int"),
    "4W4A": ("4W4A", "int"),
    "8W": ("8W", "int"),
    "8W8A": ("8W8A", "int"),
}


def table3_runs(drop) -> pd.DataFrame:
    """Rows like Table 3's runs, with drop(scheme, attack, seed) given; QAA rows skip FP as the grid does."""
    return pd.DataFrame(
        [
            {
                "scheme": name,
                "task": task,
                "method": method,
                "attack": attack,
                "seed": seed,
                "clean_acc": 0.9,
                "drop": drop(name, attack, seed),
            }
            for name, (task, method) in SCHEMES.items()
            for attack in ["label_flip", "tgda", "gc", "tgda_q", "gc_q"]
            if not (name == "fp" and attack in qat.QAA)
            for seed in range(3)
        ]
    )


def test_table3_rows_and_attacks_are_the_papers():
    assert qat.ROWS == list(SCHEMES)
    assert qat.COLUMNS == ["label_flip", "tgda", "gc", "tgda_q", "gc_q"]
    assert qat.QAA == {"gc_q": "gc", "tgda_q": "tgda"}


def test_table3_summary_extra_drop_and_claims():
    def drop(scheme, attack, seed):
        noise = 0.001 * (seed - 1)
        if attack == "gc_q" and scheme == "4W":
            return -0.08 + noise  # far stronger than GC's −0.05: holds
        if scheme == "fp":
            return -0.10 + noise
        return -0.05 + noise  # every other QAT cell: equal but for the seed noise

    summary = qat.summary(table3_runs(drop))
    row = summary.set_index(["scheme", "attack"])
    assert row.loc[("4W", "gc_q"), "mean"] == pytest.approx(-0.08)
    assert row.loc[("4W", "gc_q"), "std"] == pytest.approx(0.001)
    assert row.loc[("4W", "gc_q"), "paper"] == -0.1099 and row.loc[("fp", "gc"), "paper"] == -0.1373
    assert list(row.loc[("4W", "gc_q"), ["seed 0", "seed 1", "seed 2"]]) == pytest.approx([-0.081, -0.08, -0.079])

    extra = qat.extra_drop(summary).set_index(["scheme", "attack"])
    assert extra.loc[("4W", "gc_q"), "ours"] == pytest.approx(-0.03)
    assert extra.loc[("4W", "gc_q"), "paper"] == pytest.approx(-0.1099 + 0.0853)
    assert extra.loc[("1W bnn++", "tgda_q"), "paper"] == -0.0050  # as printed, not the cells' −0.0040
    assert extra.loc[("8W", "tgda_q"), "ours"] == pytest.approx(0.0)
    assert "fp" not in extra.index.get_level_values("scheme")

    claims = qat.claims(summary).set_index("claim")
    assert len(claims) == 3 * (8 + 6 + 4) + 8 * 2
    assert claims.loc["4W: gc_q stronger than gc", "our run"] == "holds"
    assert claims.loc["8W: gc_q stronger than gc", "our run"] == "undecided"
    assert claims.loc["gc: QAT 4W more robust than FP", "our run"] == "holds"
    assert claims.loc["gc: 4W4A more robust than 4W", "our run"] == "undecided"
    assert claims.loc["4W: gc_q stronger than gc", "paper"] == "holds"
    assert set(claims["our run"]) <= set(VERDICTS)
    assert claims.loc["4W: gc_q stronger than gc", "agrees"] and not claims.loc["8W: gc_q stronger than gc", "agrees"]
    assert set(claims.family) == {
        "QAT more robust than FP",
        "lower bits more robust",
        "WA more robust than W",
        "QAA stronger than QOA",
    }


def test_one_seed_is_undecided_without_a_test():
    summary = qat.summary(table3_runs(lambda scheme, attack, seed: -0.01 * len(scheme)).query("seed == 0"))
    claims = qat.claims(summary)
    assert set(claims["our run"]) == {"undecided"} and claims.p.isna().all() and (claims.n == 1).all()
