"""Notebook 09: backdoors across the quantization grid, beyond the paper. Does quantizing a backdoored model remove
its backdoor, and does crafting it through the quantized network keep it alive?

Cells: per seed, attack (the keys of ``experiments.backdoors.budgets``, each at its budget ε_d) and setting of
``SETTINGS`` (FP; PTQ and QAT at ``paper.W_SCHEMES``' 1, 4 and 8 bits): the poison (``cells.poison``), the clean and
the poisoned model's accuracy (``cells.accuracy``) and attack success rate on the same triggered test images
(``cells.backdoor``; the clean model's rate is the baseline, what the trigger alone does). A poison made without a
model (BadNets, Blend) serves every setting; Sleeper Agent's is crafted through the seed's clean FP model
("oblivious", used in every setting) and, for each QAT setting, through the clean QAT model of that scheme ("aware",
used against it, as notebook 05's aware poisons are).

Claims (``stats.claims``: paired by seed, Benjamini-Hochberg within each family): each backdoor works in FP (its ASR
above the clean models'); quantization removes it (the ASR under each PTQ and QAT setting below FP's); crafting
through the QAT network keeps it (Sleeper Agent's aware ASR above the oblivious one under the same QAT scheme).
The notebook shows the preset, the ASR and accuracy per setting, a figure of ASR against bits, the triggered images,
the claims and a headline.
"""

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .. import paper
from ..attacks.base import needs
from ..cells import accuracy, backdoor, load_data, poison
from ..paper import FP
from ..presets import Preset
from ..stats import Comparison, percent, points, summarise, tally
from ..stats import claims as test_claims
from . import Entry, ensure, grid_cells, grid_rows

SETTINGS = [("fp", FP)] + [("ptq", s) for s in paper.W_SCHEMES] + [("qat", s) for s in paper.W_SCHEMES]
BY = ["attack", "poisons", "regime", "scheme"]


def grid(cfg: Preset) -> list[Entry]:
    out = []
    for seed in cfg.seeds:
        for name, eps_d in cfg.experiments.backdoors.budgets.items():
            oblivious = poison(cfg, name, seed, eps_d)
            for regime, scheme in SETTINGS:
                variants = [("oblivious", oblivious)]
                if needs(name).scheme == "surrogate" and regime == "qat":
                    variants.append(("aware", poison(cfg, name, seed, eps_d, scheme)))
                for kind, nu in variants:
                    labels = {"seed": seed, "attack": name, "poisons": kind, "eps_d": eps_d, "regime": regime}
                    cells = {
                        "poison": nu,
                        "clean": accuracy(cfg, seed, regime, scheme),
                        "poisoned": accuracy(cfg, seed, regime, scheme, nu),
                        "clean_asr": backdoor(cfg, seed, regime, scheme, None, nu),
                        "asr": backdoor(cfg, seed, regime, scheme, nu, nu),
                    }
                    out.append((labels | {"scheme": scheme}, cells))
    return out


def cells(cfg: Preset) -> list:
    return grid_cells(grid(cfg))


def _row(labels: dict, values: dict) -> dict:
    (_, seconds), scheme = values["poison"], labels["scheme"]
    return {
        **{k: labels[k] for k in ("seed", "attack", "poisons", "eps_d", "regime")},
        "scheme": scheme.name,
        "bits": 32 if scheme.is_fp else scheme.w_bits,
        "clean_acc": values["clean"]["acc"],
        "acc": values["poisoned"]["acc"],
        "drop": values["poisoned"]["acc"] - values["clean"]["acc"],
        "clean_asr": values["clean_asr"]["asr"],
        "asr": values["asr"]["asr"],
        "triggered": values["asr"]["n"],
        "attack_seconds": seconds,
    }


def run(cfg: Preset, progress: bool = True) -> dict:
    """{"runs": one tidy row per seed, attack, kind of poison and setting (accuracies, drop, ASR of the poisoned
    and of the clean model), "poisons": the first seed's oblivious ν per attack (for its trigger and images)}."""
    entries = grid(cfg)
    ensure(grid_cells(entries), progress)
    first = {lab["attack"]: c["poison"] for lab, c in entries if lab["seed"] == cfg.seeds[0] and lab["regime"] == "fp"}
    return {"runs": grid_rows(entries, _row), "poisons": {a: c.value()[0] for a, c in first.items()}}


def long(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with one ASR per row: ``models`` "poisoned" (``asr``) or "clean" (``clean_asr``, the baseline)."""
    both = [runs.assign(models="poisoned"), runs.assign(models="clean", asr=runs.clean_asr, acc=runs.clean_acc)]
    return pd.concat(both, ignore_index=True)


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per attack, kind of poison, setting and models (poisoned or clean): the ASR's mean, std and one column per
    seed, the mean accuracy and the bits."""
    return summarise(long(runs), BY + ["models"], "asr", first=("bits",), means=("acc",))


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per attack, kind of poison and setting: ASR of the poisoned models and of the clean ones (mean ± std over
    seeds, %), the poisoned models' accuracy and its drop against the clean models' (points)."""
    s = summary(runs).set_index(BY + ["models"])
    drop = runs.groupby(BY, sort=False).agg(acc=("acc", "mean"), drop=("drop", "mean"), sd=("drop", "std"))
    rows = []
    for key, d in drop.iterrows():
        p, c = s.loc[key + ("poisoned",)], s.loc[key + ("clean",)]
        rows.append(
            dict(zip(BY, key))
            | {
                "ASR (%)": f"{100 * p['mean']:.1f} ± {100 * p['std']:.1f}",
                "clean models' ASR (%)": f"{100 * c['mean']:.1f} ± {100 * c['std']:.1f}",
                "accuracy": percent(d.acc),
                "drop (points)": f"{points(d['drop'])} ± {100 * (0 if pd.isna(d.sd) else d.sd):.2f}",
            }
        )
    return pd.DataFrame(rows).set_index(BY)


def claims(summary: pd.DataFrame) -> pd.DataFrame:
    """The claims of the module docstring, on the per-seed ASRs of ``summary``."""
    by = summary.set_index(BY + ["models"])
    present = set(by.index)
    comparisons = []
    for attack in dict.fromkeys(summary.attack):
        fp = (attack, "oblivious", "fp", "fp", "poisoned")
        comparisons.append(
            Comparison("works in FP", f"{attack}: FP ASR above the clean models'", fp, fp[:4] + ("clean",))
        )
        for regime, scheme in SETTINGS[1:]:
            worse = (attack, "oblivious", regime, scheme.name, "poisoned")
            comparisons.append(
                Comparison("quantization removes it", f"{attack}: {regime} {scheme.name} ASR below FP's", fp, worse)
            )
            aware = (attack, "aware", regime, scheme.name, "poisoned")
            if aware in present:
                comparisons.append(
                    Comparison(
                        "aware keeps it", f"{attack}: aware above oblivious under QAT {scheme.name}", aware, worse
                    )
                )
    return test_claims(by, comparisons)


def figure(runs: pd.DataFrame) -> sns.FacetGrid:
    """ASR against bits (32: FP), one panel per regime (FP's point repeated in each), one line per attack and kind of
    poison; mean ± std over seeds."""
    fp = runs[runs.regime == "fp"]
    data = pd.concat([runs[runs.regime != "fp"]] + [fp.assign(regime=r) for r in ("ptq", "qat")], ignore_index=True)
    data = data.assign(ASR=100 * data.asr, line=data.attack + data.poisons.map({"oblivious": "", "aware": " (aware)"}))
    g = sns.catplot(
        data=data, x="bits", y="ASR", hue="line", col="regime", kind="point", errorbar="sd", dodge=0.2, height=3.2
    )
    g.set_axis_labels("weight bits (32: FP)", "attack success rate (%)")
    return g


def images(cfg: Preset, result: dict, count: int = 4) -> plt.Figure:
    """Test images of classes other than the target (of the source class for a class-specific trigger), clean (top
    row) and triggered by each attack's trigger (a row each)."""
    _, test = load_data(cfg)
    triggers = {a: nu.trigger for a, nu in result["poisons"].items()}
    fig, axes = plt.subplots(1 + len(triggers), count, figsize=(1.5 * count, 1.6 * (1 + len(triggers))), squeeze=False)
    show = lambda ax, x: ax.imshow(x.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
    pick = [i for i in range(len(test)) if int(test.y[i]) != 0][:count]
    for j, i in enumerate(pick):
        show(axes[0, j], test.x[i])
        axes[0, 0].set_ylabel("clean", fontsize=8)
        for r, (attack, t) in enumerate(triggers.items(), start=1):
            show(axes[r, j], t.apply(test.x[i : i + 1])[0])
            axes[r, 0].set_ylabel(f"{attack}\n→ class {t.target_class}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def headline(cfg: Preset, runs: pd.DataFrame) -> str:
    """What this shows: each attack's FP ASR beside the clean models' and its accuracy drop, the range of its ASR
    under PTQ and QAT, and the claims' tallies per family."""
    tested = claims(summary(runs))
    mean = runs.groupby(BY, sort=False)[["asr", "clean_asr", "drop"]].mean()
    parts = []
    for attack in dict.fromkeys(runs.attack):
        fp = mean.loc[(attack, "oblivious", "fp", "fp")]
        quantized = mean.loc[attack].loc["oblivious"].drop("fp", level="regime")
        parts.append(
            f"{attack} (ε_d = {runs[runs.attack == attack].eps_d.iloc[0]:g}): FP ASR {100 * fp.asr:.1f}% (clean "
            f"models {100 * fp.clean_asr:.1f}%, accuracy {points(fp['drop'])} points), under PTQ and QAT "
            f"{100 * quantized.asr.min():.1f}-{100 * quantized.asr.max():.1f}%"
        )
    families = "; ".join(f"{f}: {tally(g, 'points')}" for f, g in tested.groupby("family", sort=False))
    return (
        f"**Backdoors on {cfg.dataset} ({cfg.model}, {len(cfg.seeds)} seed(s)):** " + "; ".join(parts) + ". "
        f"Claims: {families}."
    )
