"""Notebook 03's Table 4 (``qlib.experiments.ablation``): how each (PAQ, ĝ) cell is computed, and the summary and
claim verdicts on hand-made runs."""

import pandas as pd
import pytest

from qlib import paper
from qlib.experiments import ablation
from qlib.presets import load_preset
from qlib.quant import parse_scheme
from qlib.registry import ParameterError
from qlib.settings import with_settings


def test_ablation_cells_share_poisons_only_where_ghat_is_the_identity():
    bnn, int4 = parse_scheme("1W", "bnn"), parse_scheme("4W")
    assert not ablation.ghat_is_identity(bnn) and ablation.ghat_is_identity(int4)
    assert not ablation.ghat_is_identity(parse_scheme("4W4A"))
    for lsq in (parse_scheme("4W", "lsq"), parse_scheme("8W", "lsq")):
        assert lsq in ablation.LSQ_SCHEMES.values() and not ablation.ghat_is_identity(lsq)
        assert len({repr(ablation.attack_of(lsq, p, g)[:2]) for p, g in ablation.SWITCHES}) == 4
    computed = {(p, g): ablation.attack_of(bnn, p, g)[:2] for p, g in ablation.SWITCHES}
    assert computed == {
        (False, False): ("gc", {}),
        (True, True): ("gc_q", {}),
        (True, False): ("gc_q", {"paq": True, "quantized_grad": False}),
        (False, True): ("gc_q", {"paq": False, "quantized_grad": True}),
    }
    shared = {(p, g): ablation.attack_of(int4, p, g) for p, g in ablation.SWITCHES}
    assert shared[(False, True)][:2] == ("gc", {}) and shared[(True, False)][:2] == ("gc_q", {})
    assert "B ≡ 1" in shared[(False, True)][2] and "B ≡ 1" not in shared[(True, True)][2]


def test_table4_summary_and_claims():
    rows = []
    for scheme in paper.W_SCHEMES:  # the paper's rows
        bits = scheme.w_bits
        for paq, ghat in ablation.SWITCHES:
            name, switches, computed_as = ablation.attack_of(scheme, paq, ghat)
            for seed in range(2):
                d = -0.05 - (0.03 if name == "gc_q" and not switches else 0) - 0.01 * paq + 0.002 * seed
                rows.append(
                    {
                        "method": scheme.method,
                        "bits": bits,
                        "paq": paq,
                        "ghat": ghat,
                        "seed": seed,
                        "drop": d,
                        "computed_as": computed_as,
                        "poison": f"{name}{sorted(switches.items())}{bits}s{seed}",
                    }
                )
    summary = ablation.summary(pd.DataFrame(rows))
    assert summary.set_index(["bits", "paq", "ghat"]).loc[(1, True, True), "paper"] == -0.0721
    claims = ablation.claims(summary).set_index("claim")
    # at 4 and 8 bits "ĝ only" is GC's poison, so "than ĝ only" would repeat "than neither": left out
    assert list(claims.index) == [
        f"1-bit BNN: PAQ + ĝ stronger than {c}" for c in ("neither", "PAQ only", "ĝ only")
    ] + [f"{b}-bit int: PAQ + ĝ stronger than {c}" for b in (4, 8) for c in ("neither", "PAQ only")]
    assert claims.loc["4-bit int: PAQ + ĝ stronger than PAQ only", "our run"] == ablation.SAME_POISON
    assert claims.loc["4-bit int: PAQ + ĝ stronger than PAQ only", "agrees"] is None
    assert claims.loc["1-bit BNN: PAQ + ĝ stronger than PAQ only", "our run"] == "holds"
    assert claims.loc["4-bit int: PAQ + ĝ stronger than neither", "our run"] == "holds"
    assert set(claims["paper"]) == {"holds"}


def test_shared_cells_are_the_poisons_of_tables_1_and_3():
    """Both switches off is GC's poison of notebooks 01-02, both on GC-Q's of notebook 02: the same cells (ids)."""
    from qlib.experiments import qat
    from qlib.presets import load_preset

    cfg = load_preset("smoke")
    table3 = {(e[0]["attack"], e[0]["scheme"].name): e[1]["poison"].id for e in qat.grid(cfg)}
    table4 = {(e[0]["method"], e[0]["bits"], e[0]["paq"], e[0]["ghat"]): e[1]["poison"].id for e in ablation.grid(cfg)}
    # GC; 1-bit GC-Q, PAQ only, ĝ only; 4- and 8-bit int GC-Q; 4- and 8-bit LSQ GC-Q, PAQ only, ĝ only
    assert len(table4) == 5 * len(ablation.SWITCHES) and len(set(table4.values())) == 1 + 3 + 2 + 2 * 3
    for scheme in paper.W_SCHEMES:
        key = (scheme.method, scheme.w_bits)
        assert table4[(*key, False, False)] == table3[("gc", "fp")] == table3[("gc", scheme.name)]
        assert table4[(*key, True, True)] == table3[("gc_q", scheme.name)]
    assert table4[("int", 4, False, True)] == table4[("int", 4, False, False)]
    assert table4[("int", 4, True, False)] == table4[("int", 4, True, True)]
    assert table4[("bnn", 1, False, True)] not in (table4[("bnn", 1, False, False)], table4[("bnn", 1, True, True)])
    for bits in (4, 8):  # LSQ: GC's poison, then three of its own
        assert table4[("lsq", bits, False, False)] == table3[("gc", "fp")]
        own = [table4[("lsq", bits, p, g)] for p, g in ablation.SWITCHES[1:]]
        assert len(set(own)) == 3 and not set(own) & {v for k, v in table4.items() if k[0] != "lsq"}


def test_table4_and_figure4_label_the_method():
    """The int and LSQ blocks are separate rows (and bars) at the same bit-width, each beside the paper's number."""
    import matplotlib

    matplotlib.use("Agg")
    rows = [
        {
            "method": s.method,
            "bits": s.w_bits,
            "paq": p,
            "ghat": g,
            "seed": seed,
            "drop": -0.01 * (i + 1) - 0.001 * seed,
            "computed_as": ablation.attack_of(s, p, g)[2],
            "poison": f"{s.name}{p}{g}s{seed}",
        }
        for i, s in enumerate(paper.W_SCHEMES + list(ablation.LSQ_SCHEMES.values()))
        for p, g in ablation.SWITCHES
        for seed in range(2)
    ]
    table = ablation.table4(pd.DataFrame(rows))
    assert list(table.index.get_level_values("weights").unique()) == [
        "1-bit BNN",
        "4-bit int",
        "8-bit int",
        "4-bit LSQ",
        "8-bit LSQ",
    ]
    assert table.loc[("4-bit LSQ", "✗", "✓"), "computed as"] == "ĝ only"
    assert table.loc[("4-bit LSQ", "✗", "✓"), "ours: drop (mean ± std, points)"] == "-4.05 ± 0.07"
    assert (
        table.loc[("4-bit LSQ", "✓", "✓"), "paper's drop (CIFAR-10)"]
        == table.loc[("4-bit int", "✓", "✓"), "paper's drop (CIFAR-10)"]
        == "-10.99"
    )
    grid = ablation.figure4(pd.DataFrame(rows))
    assert [t.get_text() for t in grid.axes.flat[0].get_xticklabels()] == list(
        table.index.get_level_values("weights").unique()
    )


def test_lsq_bits_choose_table_4s_lsq_rows():
    """``experiments.ablation.lsq_bits`` add LSQ rows after the paper's; [] leaves the paper's rows only; others are
    refused."""
    cfg = load_preset("smoke")
    assert ablation.schemes(with_settings(cfg, "ablation", lsq_bits=[])) == paper.W_SCHEMES
    lsq = ablation.schemes(with_settings(cfg, "ablation", lsq_bits=[8, 4]))[3:]
    assert lsq == [ablation.LSQ_SCHEMES[8], ablation.LSQ_SCHEMES[4]]
    assert load_preset("cpu").experiments.ablation.lsq_bits == [4]
    assert load_preset("paper").experiments.ablation.lsq_bits == [4, 8]
    with pytest.raises(ParameterError, match=r"lsq_bits=\[2\]: allowed is a list of distinct bit-widths among 4, 8"):
        load_preset("smoke", experiments={"ablation": {"lsq_bits": [2]}})
