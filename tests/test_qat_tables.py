"""Tables 3 and 4: summaries, the ↓ column, claim verdicts on hand-made runs, and how the ablation's cells are computed."""

import pandas as pd
import pytest

from qlib import qat_tables
from qlib.quant import parse_scheme
from qlib.study import QUANTIZATION_AWARE
from qlib.tables import ONE_SEED, VERDICTS

SCHEMES = {"fp": ("fp", "fp"), "1W bnn": ("1W", "bnn"), "1W1A bnn": ("1W1A", "bnn"), "1W bnn++": ("1W", "bnn++"),
           "1W1A bnn++": ("1W1A", "bnn++"), "4W": ("4W", "int"), "4W4A": ("4W4A", "int"), "8W": ("8W", "int"),
           "8W8A": ("8W8A", "int")}


def table3_runs(drop) -> pd.DataFrame:
    """Rows like table3's, with drop(scheme, attack, seed) given; QAA rows skip FP as the grid does."""
    return pd.DataFrame([
        {"scheme": name, "task": task, "method": method, "attack": attack, "seed": seed, "clean_acc": 0.9,
         "drop": drop(name, attack, seed)}
        for name, (task, method) in SCHEMES.items() for attack in ["label_flip", "tgda", "gc", "tgda_q", "gc_q"]
        if not (name == "fp" and attack in QUANTIZATION_AWARE) for seed in range(3)
    ])


def test_table3_summary_extra_drop_and_claims():
    def drop(scheme, attack, seed):
        noise = 0.001 * (seed - 1)
        if attack == "gc_q" and scheme == "4W":
            return -0.08 + noise  # far stronger than GC's −0.05: holds
        if scheme == "fp":
            return -0.10 + noise
        return -0.05 + noise  # every other QAT cell: equal, within noise of each other

    summary = qat_tables.table3_summary(table3_runs(drop))
    row = summary.set_index(["scheme", "attack"])
    assert row.loc[("4W", "gc_q"), "mean"] == pytest.approx(-0.08)
    assert row.loc[("4W", "gc_q"), "std"] == pytest.approx(0.001)
    assert row.loc[("4W", "gc_q"), "paper"] == -0.1099 and row.loc[("fp", "gc"), "paper"] == -0.1373
    assert list(row.loc[("4W", "gc_q"), ["seed 0", "seed 1", "seed 2"]]) == pytest.approx([-0.081, -0.08, -0.079])

    extra = qat_tables.extra_drop(summary).set_index(["scheme", "attack"])
    assert extra.loc[("4W", "gc_q"), "ours"] == pytest.approx(-0.03)
    assert extra.loc[("4W", "gc_q"), "paper"] == pytest.approx(-0.1099 + 0.0853)
    assert extra.loc[("1W bnn++", "tgda_q"), "paper"] == -0.0050  # as printed, not the cells' −0.0040
    assert extra.loc[("8W", "tgda_q"), "ours"] == pytest.approx(0.0)
    assert "fp" not in extra.index.get_level_values("scheme")

    claims = qat_tables.table3_claims(summary).set_index("claim")
    assert len(claims) == 3 * (8 + 6 + 4) + 8 * 2
    assert claims.loc["4W: gc_q stronger than gc", "our run"] == "holds"
    assert claims.loc["8W: gc_q stronger than gc", "our run"] == "within noise"
    assert claims.loc["gc: QAT 4W more robust than FP", "our run"] == "holds"
    assert claims.loc["gc: 4W4A more robust than 4W", "our run"] == "within noise"
    assert claims.loc["4W: gc_q stronger than gc", "paper"] == "holds"
    assert set(claims["our run"]) <= set(VERDICTS)
    assert claims.loc["4W: gc_q stronger than gc", "agrees"] and not claims.loc["8W: gc_q stronger than gc", "agrees"]
    assert set(claims.family) == {"QAT more robust than FP", "lower bits more robust", "WA more robust than W",
                                  "QAA stronger than QOA"}


def test_ablation_cells_share_poisons_only_where_ghat_is_the_identity():
    bnn, int4 = parse_scheme("1W", "bnn"), parse_scheme("4W")
    assert not qat_tables.ghat_is_identity(bnn) and qat_tables.ghat_is_identity(int4)
    assert not qat_tables.ghat_is_identity(parse_scheme("4W4A"))
    computed = {(p, g): qat_tables.ablation_attack(bnn, p, g)[:2] for p, g in qat_tables.SWITCHES}
    assert computed == {(False, False): ("gc", {}), (True, True): ("gc_q", {}),
                        (True, False): ("gc_q", {"paq": True, "quantized_grad": False}),
                        (False, True): ("gc_q", {"paq": False, "quantized_grad": True})}
    shared = {(p, g): qat_tables.ablation_attack(int4, p, g) for p, g in qat_tables.SWITCHES}
    assert shared[(False, True)][:2] == ("gc", {}) and shared[(True, False)][:2] == ("gc_q", {})
    assert "B ≡ 1" in shared[(False, True)][2] and "B ≡ 1" not in shared[(True, True)][2]


def test_table4_summary_and_claims():
    rows = []
    for bits in (1, 4, 8):
        scheme = parse_scheme(f"{bits}W") if bits > 1 else parse_scheme("1W", "bnn")
        for paq, ghat in qat_tables.SWITCHES:
            name, switches, computed_as = qat_tables.ablation_attack(scheme, paq, ghat)
            for seed in range(2):
                d = -0.05 - (0.03 if name == "gc_q" and not switches else 0) - 0.01 * paq + 0.002 * seed
                rows.append({"bits": bits, "paq": paq, "ghat": ghat, "seed": seed, "drop": d, "computed_as": computed_as,
                             "poison": f"{name}{sorted(switches.items())}{bits}s{seed}"})
    summary = qat_tables.table4_summary(pd.DataFrame(rows))
    assert summary.set_index(["bits", "paq", "ghat"]).loc[(1, True, True), "paper"] == -0.0721
    claims = qat_tables.table4_claims(summary).set_index("claim")
    # at 4 and 8 bits "ĝ only" is GC's poison, so "than ĝ only" would repeat "than neither": left out
    assert list(claims.index) == [f"1-bit: PAQ + ĝ stronger than {c}" for c in ("neither", "PAQ only", "ĝ only")] + [
        f"{b}-bit: PAQ + ĝ stronger than {c}" for b in (4, 8) for c in ("neither", "PAQ only")]
    assert claims.loc["4-bit: PAQ + ĝ stronger than PAQ only", "our run"] == qat_tables.SAME_POISON
    assert claims.loc["4-bit: PAQ + ĝ stronger than PAQ only", "agrees"] is None
    assert claims.loc["1-bit: PAQ + ĝ stronger than PAQ only", "our run"] == "holds"
    assert claims.loc["4-bit: PAQ + ĝ stronger than neither", "our run"] == "holds"
    assert set(claims["paper"]) == {"holds"}


def test_one_seed_gives_no_verdict():
    summary = qat_tables.table3_summary(table3_runs(lambda scheme, attack, seed: -0.01 * len(scheme)).query("seed == 0"))
    assert set(qat_tables.table3_claims(summary)["our run"]) == {ONE_SEED}
