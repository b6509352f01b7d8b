"""Notebook 03's Table 4 (``qlib.experiments.ablation``): how each (PAQ, ĝ) cell is computed, and the summary and
claim verdicts on hand-made runs."""

import pandas as pd

from qlib.experiments import ablation
from qlib.quant import parse_scheme


def test_ablation_cells_share_poisons_only_where_ghat_is_the_identity():
    bnn, int4 = parse_scheme("1W", "bnn"), parse_scheme("4W")
    assert not ablation.ghat_is_identity(bnn) and ablation.ghat_is_identity(int4)
    assert not ablation.ghat_is_identity(parse_scheme("4W4A"))
    computed = {(p, g): ablation.attack_of(bnn, p, g)[:2] for p, g in ablation.SWITCHES}
    assert computed == {(False, False): ("gc", {}), (True, True): ("gc_q", {}),
                        (True, False): ("gc_q", {"paq": True, "quantized_grad": False}),
                        (False, True): ("gc_q", {"paq": False, "quantized_grad": True})}
    shared = {(p, g): ablation.attack_of(int4, p, g) for p, g in ablation.SWITCHES}
    assert shared[(False, True)][:2] == ("gc", {}) and shared[(True, False)][:2] == ("gc_q", {})
    assert "B ≡ 1" in shared[(False, True)][2] and "B ≡ 1" not in shared[(True, True)][2]


def test_table4_summary_and_claims():
    rows = []
    for bits in (1, 4, 8):
        scheme = parse_scheme(f"{bits}W") if bits > 1 else parse_scheme("1W", "bnn")
        for paq, ghat in ablation.SWITCHES:
            name, switches, computed_as = ablation.attack_of(scheme, paq, ghat)
            for seed in range(2):
                d = -0.05 - (0.03 if name == "gc_q" and not switches else 0) - 0.01 * paq + 0.002 * seed
                rows.append({"bits": bits, "paq": paq, "ghat": ghat, "seed": seed, "drop": d, "computed_as": computed_as,
                             "poison": f"{name}{sorted(switches.items())}{bits}s{seed}"})
    summary = ablation.summary(pd.DataFrame(rows))
    assert summary.set_index(["bits", "paq", "ghat"]).loc[(1, True, True), "paper"] == -0.0721
    claims = ablation.claims(summary).set_index("claim")
    # at 4 and 8 bits "ĝ only" is GC's poison, so "than ĝ only" would repeat "than neither": left out
    assert list(claims.index) == [f"1-bit: PAQ + ĝ stronger than {c}" for c in ("neither", "PAQ only", "ĝ only")] + [
        f"{b}-bit: PAQ + ĝ stronger than {c}" for b in (4, 8) for c in ("neither", "PAQ only")]
    assert claims.loc["4-bit: PAQ + ĝ stronger than PAQ only", "our run"] == ablation.SAME_POISON
    assert claims.loc["4-bit: PAQ + ĝ stronger than PAQ only", "agrees"] is None
    assert claims.loc["1-bit: PAQ + ĝ stronger than PAQ only", "our run"] == "holds"
    assert claims.loc["4-bit: PAQ + ĝ stronger than neither", "our run"] == "holds"
    assert set(claims["paper"]) == {"holds"}


def test_shared_cells_are_the_poisons_of_tables_1_and_3():
    """Both switches off is GC's poison of notebooks 01-02, both on GC-Q's of notebook 02: the same cells (ids)."""
    from qlib.experiments import qat
    from qlib.presets import load_preset

    cfg = load_preset("smoke")
    table3 = {(e[0]["attack"], e[0]["scheme"].name): e[1]["poison"].id for e in qat.grid(cfg)}
    table4 = {(e[0]["bits"], e[0]["paq"], e[0]["ghat"]): e[1]["poison"].id for e in ablation.grid(cfg)}
    assert len(table4) == 3 * len(ablation.SWITCHES) and len(set(table4.values())) == 1 + 3 + 2  # GC; 1-bit GC-Q, PAQ only, ĝ only; 4- and 8-bit GC-Q
    for scheme in ablation.SCHEMES:
        bits = scheme.w_bits
        assert table4[(bits, False, False)] == table3[("gc", "fp")] == table3[("gc", scheme.name)]
        assert table4[(bits, True, True)] == table3[("gc_q", scheme.name)]
    assert table4[(4, False, True)] == table4[(4, False, False)] and table4[(4, True, False)] == table4[(4, True, True)]
    assert table4[(1, False, True)] not in (table4[(1, False, False)], table4[(1, True, True)])
