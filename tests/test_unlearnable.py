"""Notebook 04's Table 5 (``qlib.experiments.unlearnable``): summary, the paired accuracy increase, generation times and
claim verdicts on hand-made runs."""

import pandas as pd
import pytest

from qlib.attacks.unlearnable import UNLEARNABLE
from qlib.experiments import unlearnable as ue


def table5_runs(drop) -> pd.DataFrame:
    """Rows like table5's: drop(scheme, attack, seed) given, clean accuracy 0.9 in FP and 0.8 under QAT."""
    return pd.DataFrame(
        [
            {
                "scheme": scheme,
                "attack": attack,
                "seed": seed,
                "clean_acc": 0.9 if scheme == "fp" else 0.8,
                "acc": (0.9 if scheme == "fp" else 0.8) + drop(scheme, attack, seed),
                "drop": drop(scheme, attack, seed),
                "attack_seconds": 10.0 + seed,
            }
            for attack in UNLEARNABLE
            for seed in range(3)
            for scheme in ue.COLUMNS
        ]
    )


def drop(scheme, attack, seed):
    noise = 0.01 * (seed - 1)
    if attack == "ops":
        return 0.005 * (seed - 1)  # no effect anywhere: undecided
    if attack == "em" and scheme == "1W1A adabin":
        return -0.80 + noise  # QAT less robust than FP: fails
    return (-0.60 if scheme == "fp" else -0.40) + noise


def test_summary_columns_and_paper_numbers():
    summary = ue.summary(table5_runs(drop)).set_index(["scheme", "attack"])
    assert summary.loc[("fp", "tap"), "mean"] == pytest.approx(-0.60) and summary.loc[
        ("fp", "tap"), "std"
    ] == pytest.approx(0.01)
    assert summary.loc[("fp", "tap"), "acc"] == pytest.approx(0.30) and summary.loc[("fp", "tap"), "clean_acc"] == 0.9
    assert summary.loc[("fp", "ntga"), "paper"] == -0.8220 and summary.loc[("1W1A adabin", "ntga"), "paper"] == -0.6954
    assert pd.isna(summary.loc[("1W1A bnn", "ntga"), "paper"])  # the paper has no BNN column
    assert summary.loc[("1W1A adabin", "em"), "paper_clean"] == 0.9278


def test_increase_is_paired_by_seed_and_matches_the_papers_printed_column():
    inc = ue.increase(table5_runs(drop)).set_index(["scheme", "attack"])
    # the seed noise is common to FP and QAT, so the paired increase has no spread
    assert inc.loc[("1W1A bnn", "tap"), "mean"] == pytest.approx(0.20) and inc.loc[
        ("1W1A bnn", "tap"), "std"
    ] == pytest.approx(0)
    assert inc.loc[("1W1A adabin", "em"), "mean"] == pytest.approx(-0.20)
    printed = {"em": 2.24, "tap": 6.03, "dc": 5.25, "sn": 4.87, "ar": 2.80, "ntga": 12.66, "rem": 0.45, "ops": 6.23}
    for attack, value in printed.items():
        assert 100 * inc.loc[("1W1A adabin", attack), "paper"] == pytest.approx(value)
        assert pd.isna(inc.loc[("1W1A bnn", attack), "paper"])


def test_generation_times_count_each_poison_once():
    times = ue.generation_times(table5_runs(drop)).set_index("attack")
    assert times.loc["em", "mean"] == pytest.approx(11.0) and times.loc["em", "total"] == pytest.approx(33.0)


def test_claims():
    claims = ue.claims(ue.summary(table5_runs(drop))).set_index("claim")
    assert len(claims) == len(UNLEARNABLE) * (3 + 2)
    assert claims.loc["tap lowers fp accuracy", "our run"] == "holds"
    assert claims.loc["tap lowers fp accuracy", "paper"] == "holds" and claims.loc["tap lowers fp accuracy", "agrees"]
    assert claims.loc["ops lowers 1W1A bnn accuracy", "our run"] == "undecided"
    assert pd.isna(claims.loc["ops lowers 1W1A bnn accuracy", "paper"])
    assert claims.loc["tap: QAT 1W1A bnn more robust than FP", "our run"] == "holds"
    assert claims.loc["em: QAT 1W1A adabin more robust than FP", "our run"] == "fails"
    assert claims.loc["em: QAT 1W1A adabin more robust than FP", "paper"] == "holds"
    assert not claims.loc["em: QAT 1W1A adabin more robust than FP", "agrees"]
    assert set(claims.family) == {"lowers accuracy", "QAT more robust than FP"}
