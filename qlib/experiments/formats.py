"""Notebook 10: today's formats, beyond the paper. Do the paper's poisons, an unlearnable example and a backdoor
survive the quantization people ship (torchao's per-group int4 weights, int4 weights with int8 dynamic per-token
activations, float8), as they do the paper's per-tensor integers?

Cells: per seed of ``experiments.formats.seeds``, attack of ``ATTACKS`` and setting (FP; PTQ and QAT under each scheme
of ``experiments.formats.schemes`` and under int per tensor at each of their weight bit-widths, the baselines): the
poison (``cells.poison``; GC-Q crafted through each scheme's own quantizers, from the registry), the clean and the
poisoned model's accuracy (``cells.accuracy``) and, for BadNets, the attack success rate of both on the same
triggered test images (``cells.backdoor``). Label flip, GC and GC-Q run at the preset's ε_d, EM at ε_d = 1 on Table
5's training set (``unlearnable.preset``, as notebook 04), BadNets at notebook 09's budget.

Claims (``stats.claims``: paired by seed, Benjamini-Hochberg within each family): each attack survives each setting
(the poisoned models' accuracy below the clean models', BadNets' ASR above theirs); and each format against int per
tensor at its weight bits in the same regime: less damage (a smaller drop; a lower ASR) under the format.
The notebook shows the preset, which path computed each format, the drops and ASR per setting, a figure, the claims
and a headline.
"""

import pandas as pd
import seaborn as sns
import torch
from torch import nn

from ..attacks.base import needs
from ..cells import accuracy, backdoor, poison
from ..devices import resolve
from ..paper import FP
from ..presets import Preset
from ..quant import QuantScheme, methods, parse_scheme, scheme_named
from ..quant.formats import base_config, torchao_model
from ..stats import Comparison, points, summarise, tally
from ..stats import claims as test_claims
from . import Entry, ensure, grid_cells, grid_rows
from .unlearnable import EPS_D as EM_EPS_D
from .unlearnable import preset as unlearnable_preset

ATTACKS = ["label_flip", "gc", "gc_q", "em", "badnets"]
REGIMES = ("ptq", "qat")
BY = ["attack", "regime", "scheme"]


def schemes(cfg: Preset) -> list[QuantScheme]:
    """The formats of ``experiments.formats.schemes``: a name that does not parse, or a method whose package is
    missing, is refused here, before any cell is declared."""
    return [scheme_named(name) for name in cfg.experiments.formats.schemes]


def baseline(scheme: QuantScheme) -> QuantScheme:
    """int per tensor at ``scheme``'s weight bits, weights only: the paper's quantizer, a format's baseline."""
    return parse_scheme(f"{scheme.w_bits}W")


def settings(cfg: Preset) -> list[tuple[str, QuantScheme]]:
    """FP, then PTQ and QAT under each baseline and each format."""
    formats = schemes(cfg)
    quantized = list(dict.fromkeys([baseline(s) for s in formats] + formats))
    return [("fp", FP)] + [(regime, s) for s in quantized for regime in REGIMES]


def _budget(cfg: Preset, attack: str) -> tuple[Preset, float]:
    """The preset and ε_d ``attack`` runs with."""
    if attack == "em":
        return unlearnable_preset(cfg), EM_EPS_D
    if needs(attack).trigger:
        return cfg, cfg.experiments.backdoors.budgets.get(attack, cfg.eps_d)
    return cfg, cfg.eps_d


def grid(cfg: Preset) -> list[Entry]:
    out = []
    for seed in cfg.experiments.formats.seeds:
        for name in ATTACKS:
            c, eps_d = _budget(cfg, name)
            aware = needs(name).scheme == "attacked"
            for regime, scheme in settings(cfg):
                if aware and scheme.is_fp:
                    continue
                nu = poison(c, name, seed, eps_d, scheme if aware else None)
                cells = {
                    "poison": nu,
                    "clean": accuracy(c, seed, regime, scheme),
                    "poisoned": accuracy(c, seed, regime, scheme, nu),
                }
                if needs(name).trigger:
                    cells |= {
                        "clean_asr": backdoor(c, seed, regime, scheme, None, nu),
                        "asr": backdoor(c, seed, regime, scheme, nu, nu),
                    }
                labels = {"seed": seed, "attack": name, "eps_d": eps_d, "regime": regime, "scheme": scheme}
                out.append((labels, cells))
    return out


def cells(cfg: Preset) -> list:
    return grid_cells(grid(cfg))


def _row(labels: dict, values: dict) -> dict:
    scheme = labels["scheme"]
    row = {
        **{k: labels[k] for k in ("seed", "attack", "eps_d", "regime")},
        "scheme": scheme.name,
        "method": scheme.method,
        "bits": 32 if scheme.is_fp else scheme.w_bits,
        "baseline": None if scheme.method in ("fp", "int") else baseline(scheme).name,
        "clean_acc": values["clean"]["acc"],
        "acc": values["poisoned"]["acc"],
        "drop": values["poisoned"]["acc"] - values["clean"]["acc"],
        "attack_seconds": values["poison"][1],
    }
    if "asr" in values:
        row |= {"clean_asr": values["clean_asr"]["asr"], "asr": values["asr"]["asr"]}
    return row


def run(cfg: Preset, progress: bool = True) -> pd.DataFrame:
    """One tidy row per seed, attack and setting: accuracies, the drop, and BadNets' ASR of the poisoned and the
    clean models."""
    entries = grid(cfg)
    ensure(grid_cells(entries), progress)
    return grid_rows(entries, _row)


def paths(cfg: Preset) -> pd.DataFrame:
    """Per format, torchao's PTQ config and what computed it here: torchao's own quantized model, which the tests
    show gives exactly qlib's outputs, or, where torchao has no kernel on this device, its fake-quant reference
    (found by quantizing one linear layer with torchao's API on the preset's device)."""
    rows = []
    for s in schemes(cfg):
        row = {"scheme": s.name, "method": methods.method(s.method).summary}
        if s.method in ("torchao", "fp8"):
            device = resolve(cfg.device)
            try:
                torchao_model(nn.Sequential(nn.Linear(256, 8)).to(device), s, ["0"])(torch.zeros(2, 256, device=device))
                how = "torchao's kernel; qlib's fake quantizers give the same outputs (tests/test_formats.py)"
            except AssertionError as e:
                how = f"torchao's fake-quant reference: torchao's own PTQ refused this device ({e})"
            row |= {"torchao config": type(base_config(s)).__name__, "PTQ computed by": how}
        rows.append(row)
    return pd.DataFrame(rows).set_index("scheme")


def long(runs: pd.DataFrame) -> pd.DataFrame:
    """One score per row: ``models`` "poisoned" or "clean"; the score is the accuracy, or BadNets' ASR."""
    asr = runs.asr.notna() if "asr" in runs else pd.Series(False, index=runs.index)
    score = runs.acc.where(~asr, runs.get("asr"))
    clean = runs.clean_acc.where(~asr, runs.get("clean_asr"))
    both = [runs.assign(models="poisoned", score=score), runs.assign(models="clean", score=clean)]
    return pd.concat(both, ignore_index=True).assign(metric=lambda d: d.attack.map(_metric))


def _metric(attack: str) -> str:
    return "ASR" if needs(attack).trigger else "accuracy"


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per attack, setting and models: the score's mean, std and one column per seed, and the bits."""
    return summarise(long(runs), BY + ["models"], "score", first=("bits", "metric"))


def effects(runs: pd.DataFrame) -> pd.DataFrame:
    """Per attack and setting, the attack's effect per seed: the drop (poisoned − clean accuracy) or the ASR."""
    value = runs["drop"] if "asr" not in runs else runs.asr.where(runs.asr.notna(), runs["drop"])
    return summarise(runs.assign(effect=value), BY, "effect", first=("bits",))


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per attack and setting: the drop (points, mean ± std over seeds) and, for BadNets, the ASR of the poisoned and
    of the clean models (%); the accuracy of the clean models."""
    rows = []
    for key, d in runs.groupby(BY, sort=False):
        row = dict(zip(BY, key)) | {
            "clean accuracy": f"{100 * d.clean_acc.mean():.2f}%",
            "drop (points)": f"{points(d['drop'].mean())} ± {100 * (d['drop'].std() if len(d) > 1 else 0):.2f}",
        }
        if "asr" in d and d.asr.notna().all():
            row |= {
                "ASR (%)": f"{100 * d.asr.mean():.1f} ± {100 * (d.asr.std() if len(d) > 1 else 0):.1f}",
                "clean models' ASR (%)": f"{100 * d.clean_asr.mean():.1f}",
            }
        rows.append(row)
    return pd.DataFrame(rows).set_index(BY).fillna("")


def claims(runs: pd.DataFrame) -> pd.DataFrame:
    """The claims of the module docstring, on the per-seed scores and effects of ``runs``."""
    by, effect = summary(runs).set_index(BY + ["models"]), effects(runs).set_index(BY)
    per_unit = pd.concat([by, effect.assign(models="effect").set_index("models", append=True)])
    comparisons = []
    for attack, regime, scheme in effect.index:
        asr = _metric(attack) == "ASR"
        poisoned, clean = (attack, regime, scheme, "poisoned"), (attack, regime, scheme, "clean")
        comparisons.append(
            Comparison(
                "survives",
                f"{attack}: {regime} {scheme} " + ("ASR above the clean models'" if asr else "accuracy below clean"),
                poisoned if asr else clean,
                clean if asr else poisoned,
            )
        )
    baselines = runs.groupby("scheme").baseline.first()
    for attack, regime, scheme in effect.index:
        if regime == "fp" or pd.isna(int_scheme := baselines[scheme]):
            continue
        ours, theirs = (attack, regime, scheme, "effect"), (attack, regime, int_scheme, "effect")
        if theirs[:3] not in effect.index:
            continue
        asr = _metric(attack) == "ASR"
        comparisons.append(
            Comparison(
                "format vs int per tensor",
                f"{attack}: {regime} {scheme} "
                + (f"ASR below {int_scheme}'s" if asr else f"smaller drop than {int_scheme}"),
                theirs if asr else ours,
                ours if asr else theirs,
            )
        )
    return test_claims(per_unit, comparisons)


def figure(runs: pd.DataFrame) -> sns.FacetGrid:
    """Each attack's effect per setting (drop in points; BadNets: ASR in %), one panel per attack, PTQ and QAT
    side by side; mean ± std over seeds."""
    e = runs.assign(
        effect=100 * (runs.asr.where(runs.asr.notna(), runs["drop"]) if "asr" in runs else runs["drop"]),
    )
    g = sns.catplot(
        data=e, x="scheme", y="effect", hue="regime", col="attack", kind="bar", errorbar="sd", sharey=False,
        height=3.0, aspect=1.1, col_wrap=3,
    )  # fmt: skip
    g.set_axis_labels("", "drop (points) / ASR (%)")
    for ax in g.axes.flat:
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    return g


def headline(cfg: Preset, runs: pd.DataFrame) -> str:
    """Per attack, its effect in FP, its range under int per tensor and under the formats (PTQ and QAT); the claims'
    tallies per family."""
    tested = claims(runs)
    effect = runs.asr.where(runs.asr.notna(), runs["drop"]) if "asr" in runs else runs["drop"]
    mean = runs.assign(effect=100 * effect).groupby(["attack", "regime", "scheme", "method"], sort=False).effect.mean()
    parts = []
    for attack in dict.fromkeys(runs.attack):
        m = mean.loc[attack].reset_index()
        span = lambda d: f"{d.effect.min():+.1f} to {d.effect.max():+.1f}"
        fp = m[m.regime == "fp"].effect
        parts.append(
            f"{attack} "
            + ("ASR (%)" if _metric(attack) == "ASR" else "drop (points)")
            + ": "
            + (f"FP {fp.iloc[0]:+.1f}, " if len(fp) else "")
            + f"int per tensor {span(m[m.method == 'int'])}, "
            + f"today's formats {span(m[~m.method.isin(['int', 'fp'])])}"
        )
    families = "; ".join(f"{f}: {tally(g, 'points')}" for f, g in tested.groupby("family", sort=False))
    return (
        f"**Today's formats on {cfg.dataset} ({cfg.model}, {len(cfg.experiments.formats.seeds)} seed(s)), PTQ and "
        f"QAT:** " + "; ".join(parts) + f". Claims: {families}."
    )
