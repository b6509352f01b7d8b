"""The primary comparisons (``qlib.design``, ``qlib.experiments.primary``): every bad name or value is refused at
load with one line naming it; the stages compute only what the open comparisons need; the verdicts follow the
sequential rule on the cached differences; replication writes its verdicts beside the reports."""

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from qlib import stats
from qlib.design import parse_design
from qlib.experiments import verdicts
from qlib.presets import load_preset, read_yaml
from qlib.registry import ParameterError

CPU = read_yaml("cpu")["primary"]


def with_change(path, value):
    spec = copy.deepcopy(CPU)
    node = spec
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return spec


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("comparisons", 0, "better"), "QAT 3X", r"primary\.comparisons\[0\]\.better\.setting='QAT 3X'.*unknown task"),
        (
            ("comparisons", 0, "attack"),
            "gcc",
            r"unknown attack 'gcc' in preset field primary\.comparisons\[0\]\.better.*did you mean gc",
        ),
        (
            ("comparisons", 1, "bounds"),
            "clip",
            r"primary\.comparisons\[1\]\.bounds='clip': allowed is one of image, none",
        ),
        (("comparisons", 0, "model"), "vgg", r"unknown model 'vgg' in preset field primary\.comparisons\[0\]\.model"),
        (("comparisons", 0, "delta"), 0, r"primary\.comparisons\[0\]\.delta=0: allowed is a positive finite number"),
        (("comparisons", 0, "delta"), -1.5, r"primary\.comparisons\[0\]\.delta=-1\.5: allowed is a positive"),
        (("delta",), 0.0, r"primary\.delta=0\.0: allowed is a positive finite number"),
        (("comparisons", 0, "claim"), 7, r"primary\.comparisons\[0\]\.claim=7: allowed is one of 1 \(quantization"),
        (("comparisons", 0, "better"), "QAT", r"better\.setting='QAT': allowed is 'FP', or 'PTQ <task>"),
        (
            ("comparisons", 0, "worse"),
            "QAQ 4W",
            r"worse\.setting='QAQ 4W': allowed is 'FP', or 'PTQ <task> \[method\]' or 'QAT",
        ),
        (
            ("comparisons", 0, "worse"),
            {"setting": "FP", "attack": "gc_q"},
            r"worse\.setting='FP': allowed is a quantized setting: gc_q",
        ),
        (
            ("comparisons", 0, "better"),
            {"setting": "QAT 1W", "paq": False},
            r"better\.paq=False: allowed is true or false, and only for attack gc_q",
        ),
        (("comparisons", 0, "regime"), "fp", r"unknown key 'regime' in preset field primary\.comparisons\[0\]"),
        (
            ("first_seed",),
            8,
            r"primary\.first_seed=8: allowed is deciding seeds that exclude the pilot seeds \(seeds \[8, 9\]",
        ),
        (("group",), 1, r"primary\.group=1: allowed is an integer ≥ 2"),
        (("cap",), 3, r"primary\.group=5: allowed is an integer ≥ 2 and ≤ cap \(3\)"),
        (("pilot_seeds",), [0], r"primary\.pilot_seeds=\[0\]: allowed is a list of at least two distinct integers"),
        (("comparisons",), [], r"primary\.comparisons=\[\]: allowed is a non-empty list"),
        (("targeted", 0, "trials"), 62, r"primary\.targeted\[0\]\.trials=62: allowed is a multiple of per_seed \(4\)"),
        (
            ("targeted", 0, "trials"),
            4,
            r"primary\.targeted\[0\]\.trials=4: allowed is at least 7: at claim 6's level \(α/2\)",
        ),
        (
            ("targeted", 0, "better"),
            "PTQ 4W",
            r"primary\.targeted\[0\]\.better='PTQ 4W': allowed is 'FP' or 'QAT <task> \[method\]'",
        ),
        (
            ("targeted", 0, "worse"),
            "QAT 1W bnn",
            r"primary\.targeted\[0\]\.worse='QAT 1W bnn': allowed is a victim other than better's \('QAT 1W bnn'\)",
        ),
        (("targeted", 0, "settings"), [100], r"primary\.targeted\[0\]\.settings=\[100\]: allowed is a mapping"),
        (
            ("targeted", 0, "delta"),
            150,
            r"primary\.targeted\[0\]\.delta=150\.0: allowed is a number of points of success rate",
        ),
        (("targeted", 0, "epochs"), 3, r"unknown key 'epochs' in preset field primary\.targeted\[0\]"),
        (
            ("targeted", 0, "finetune_lr"),
            "fast",
            r"primary\.targeted\[0\]\.finetune_lr='fast': allowed is a positive finite number",
        ),
    ],
)
def test_a_bad_primary_comparison_is_refused_at_load_with_one_line_naming_it(path, value, message):
    with pytest.raises(ParameterError, match=message) as e:
        load_preset("cpu", primary=with_change(path, value))
    assert "\n" not in str(e.value)


def test_an_unknown_design_key_and_repeated_ids_are_refused():
    with pytest.raises(ParameterError, match=r"unknown key 'alpha' in preset field primary"):
        parse_design({**CPU, "alpha": 0.1})
    twice = with_change(("comparisons",), [CPU["comparisons"][0], CPU["comparisons"][0]])
    with pytest.raises(ParameterError, match=r"allowed is distinct ids"):
        parse_design(twice)


def test_the_cpu_design_covers_every_claim_with_its_looks_and_fresh_seeds():
    d = load_preset("cpu").design
    assert {c.claim for c in d.comparisons} == {1, 2, 3, 4, 5, 6}
    assert all(1 <= len(d.family(k)) <= 3 for k in range(1, 7))
    assert d.looks == [5, 10, 15, 20] and d.seeds == list(range(100, 120))
    assert not set(d.pilot_seeds) & set(d.seeds)
    assert [t.id for t in d.targeted] == ["6b"] and d.targeted[0].trials >= 60 and len(d.family(6)) == 2
    switched = {c.id: dict(c.better.switches) for c in d.comparisons if c.claim == 5}
    assert switched == {"5a": {"paq": False, "quantized_grad": True}, "5b": {"paq": True, "quantized_grad": False}}


def test_the_stages_compute_only_the_open_comparisons_and_the_verdicts_follow_the_rule(tmp_path, monkeypatch):
    """On smoke (pilot 2 seeds, looks after 2 and 4): a comparison decided at look 1 gets no cell of seeds 102-103;
    each verdict is stats.look's on the cached differences at that look's boundary."""
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))
    cfg = load_preset("smoke")
    design = cfg.design
    # a replication skips the pilot: none of its cells computed, the same verdicts, no power columns
    replicated = verdicts.decide(cfg, progress=False, pilot=False)
    t = design.targeted[0]
    assert not any(
        cell.done()
        for c in design.comparisons
        for s in design.pilot_seeds
        for side in (c.better, c.worse)
        for cell in verdicts.side_cells(cfg, c, side, s).values()
    )
    assert not any(verdicts.targets(cfg, s, t.per_seed).done() for s in design.pilot_seeds)
    assert replicated["verdicts"][["pilot sd", "seeds for power"]].isna().all().all()
    assert len(replicated["trials"]) == t.trials and replicated["pilot"].shape[1] == 1
    result = verdicts.decide(cfg, progress=False)
    looks, table = result["looks"], result["verdicts"].set_index("id")
    assert table[["pilot sd", "seeds for power"]].notna().all().all()
    decisive = [k for k in verdicts.COLUMNS if k not in ("pilot sd", "seeds for power")]
    assert replicated["verdicts"][decisive].equals(result["verdicts"][decisive])
    assert set(table.verdict) <= set(stats.PRIMARY_VERDICTS)
    for c in design.comparisons:
        mine = looks[looks.id == c.id]
        last = mine.iloc[-1]
        assert table.loc[c.id, "seeds"] == last.n == design.looks[len(mine) - 1]
        d = verdicts.differences(cfg, c, design.seeds[: last.n])
        bound = stats.spending_bounds(np.array(design.looks) / design.cap, stats.ALPHA / len(design.family(c.claim)))[
            len(mine) - 1
        ]
        expected = stats.look(d, c.delta, bound, final=last.n == design.cap)["verdict"]
        assert table.loc[c.id, "verdict"] == expected
        # its poisons and poisoned models of later seeds were never computed (clean models may be another's)
        assert not any(
            verdicts.side_cells(cfg, c, side, s)[name].done()
            for s in design.seeds[last.n :]
            for side in (c.better, c.worse)
            for name in ("poison", "poisoned")
        )
    # the targeted comparison: decided by stats.paired_rates on its deciding trials, at the claim's Bonferroni level
    decided = verdicts.trials(cfg, t, design.targeted_seeds(t))
    r = stats.paired_rates(verdicts.pairs(decided), t.delta, stats.ALPHA / len(design.family(t.claim)))
    assert (table.loc[t.id, "verdict"], table.loc[t.id, "seeds"], table.loc[t.id, "unit"]) == (
        r["verdict"],
        t.trials,
        "trial",
    )
    assert len(result["trials"]) == t.trials + len(design.pilot_seeds) * t.per_seed
    again = verdicts.decide(cfg, progress=False)
    assert again["cells"] == 0 and again["verdicts"].equals(result["verdicts"])


def test_a_fine_tuned_victim_starts_from_the_pretrained_model_on_images_it_never_saw(tmp_path, monkeypatch):
    """The fine-tuning set is class-balanced and disjoint from μ; at a vanishing learning rate the fine-tuned
    victim, FP or QAT, keeps the pretrained weights (its latent weights, for QAT), so training starts there."""
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))
    from qlib.cells import finetune_data, finetuned, load_data, trained
    from qlib.executors import compute
    from qlib.paper import FP
    from qlib.quant import parse_scheme

    cfg = load_preset("smoke")
    train, _ = load_data(cfg)
    tune = finetune_data(cfg, 200)
    assert len(tune) == 200 and not set(tune.origin.tolist()) & set(train.origin.tolist())
    assert np.bincount(tune.y.numpy(), minlength=10).tolist() == [20] * 10
    pretrained = trained(cfg, 0, FP, curve=False)
    for scheme in (FP, parse_scheme("1W", "bnn")):
        cell = finetuned(cfg, 0, scheme, 200, 1, 1e-12)
        compute([cell], "serial", threads=1, progress=False)
        before, after = pretrained.value()[0].state_dict(), cell.value()[0].state_dict()
        weights = [k for k in before if k.endswith("weight") and before[k].ndim > 1]
        assert weights and all(torch.allclose(before[k], after[k], atol=1e-6) for k in weights)


def test_replicate_writes_verdicts_and_kernels_and_refuses_a_preset_without_comparisons(tmp_path):
    env = {"QLIB_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "replication.json"
    done = subprocess.run(
        [sys.executable, "-m", "qlib", "replicate", "--preset", "smoke", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert record["preset"] == "smoke" and "cpu capability" in record["kernels"]
    assert [r["id"] for r in record["primary"]] == ["1a", "4a", "6b"]
    refused = subprocess.run(
        [sys.executable, "-m", "qlib", "replicate", "--preset", "paper", "--out", str(tmp_path / "p.json")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "declares no primary comparisons" in refused.stderr
    assert not (tmp_path / "p.json").exists()


def test_the_command_line_refuses_a_bad_primary_comparison_before_anything_runs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "primary: {pilot_seeds: [0, 1], first_seed: 100, group: 2, cap: 4, delta: 1.0, comparisons: "
        "[{id: a, claim: 1, attack: gc, better: QAT 1W bnn, worse: FP, delta: -2}]}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "qlib", "grid", "08_primary_claims", "--preset", "smoke", "-f", str(bad)],
        env={"QLIB_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "qlib: error: preset field primary.comparisons[0].delta=-2: allowed is a positive finite number"
    )
    assert not (tmp_path / "cache").exists()
