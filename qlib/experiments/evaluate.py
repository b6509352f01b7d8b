"""Notebook 07 and ``python -m qlib evaluate``: any poison file against the quantization grid.

Cells: the poison (``cells.imported``): a file (``qlib.poison.load_poison``), or by default ``DEFAULT_ATTACK``'s ν at
ε_d = ``cfg.eps_d`` made for the first seed, exported to ``.npz`` and read back; per seed and setting (``settings``:
the fp scheme in FP, each quantized scheme in PTQ of the FP model and in QAT), the accuracy of the clean and of the
poisoned model (``cells.accuracy``; the clean ones are the notebooks' own cache entries); with ``pixels`` "uint8"
the same for the poison rounded to 8-bit images (``qlib.poison.as_uint8``); for a file that declares a target test
image and an adversarial class, every model's prediction on it (``cells.prediction``). One poison serves every
seed: at the seed it was made for, the drop is the notebooks' row for that poison; at the others it transfers.
The notebook shows the grid's table (drop against the clean model of the same scheme, seed and regime, with the
paired 95% interval over seeds), a figure (drop against bits, one line per regime), for a targeted file its
success and misclassification rates, with ``uint8`` whether the poison survives rounding, a few poisons beside
their sources, the provenance of the file, and a headline.
"""

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..cells import accuracy, backdoor, export_path, imported, load_data, poison, prediction, test_split
from ..poison import PIXELS, PoisonSet, describe
from ..presets import Preset
from ..quant import REGIMES, QuantScheme, scheme_named
from ..registry import ParameterError
from ..stats import ALPHA, paired, percent, points, rate
from . import Entry, ensure, grid_cells

DEFAULT_ATTACK = "gc"  # notebook 07's own poison when no file is given: GC at the preset's ε_d, first seed
SCHEMES = ["fp", "1W", "4W", "8W"]
EVAL_REGIMES = ["fp", "ptq", "qat"]
KEYS = ["regime", "scheme", "pixels"]  # a row of the summary
BASELINE = "clean models' ASR"  # a backdoor's rate on models trained without it: what the trigger alone does


OWN = ("poison_path", "schemes", "regimes", "pixels")  # notebook 07's own parameters (qlib.params.OWN)


def settings(schemes: list[str], regimes: list[str]) -> list[tuple[str, QuantScheme]]:
    """(regime, scheme) pairs: fp with the fp scheme; ptq and qat with each quantized scheme, in the order given."""
    for r in regimes:
        if r not in REGIMES:
            raise ParameterError(f"regime {r!r}; allowed: {', '.join(REGIMES)}")
    parsed = [scheme_named(s) for s in schemes]
    out = [(r, s) for r in regimes for s in parsed if (r == "fp") == s.is_fp]
    if not out:
        raise ParameterError(
            f"schemes {schemes} and regimes {regimes} make no setting: fp goes with the scheme fp, "
            "ptq and qat with quantized schemes such as 1W, 4W, 8W"
        )
    return out


def source(cfg: Preset, poison_path: str | None, pixels: str = "float"):
    """The poison's cell: the file at ``poison_path``, or the default attack's ν exported to ``.npz``."""
    if poison_path is None:
        return imported(cfg, poison(cfg, DEFAULT_ATTACK, cfg.seeds[0], cfg.eps_d), pixels)
    return imported(cfg, poison_path, pixels)


def grid(
    cfg: Preset,
    poison_path: str | None = None,
    schemes: list[str] = SCHEMES,
    regimes: list[str] = EVAL_REGIMES,
    pixels: str = "float",
) -> list[Entry]:
    if pixels not in PIXELS:
        raise ParameterError(f"pixels={pixels!r}; allowed: {', '.join(PIXELS)}")
    variants = {p: source(cfg, poison_path, p) for p in (["float", "uint8"] if pixels == "uint8" else ["float"])}
    target, trigger = variants["float"].args["target"], variants["float"].args["trigger"]
    out = []
    for seed in cfg.seeds:
        for regime, scheme in settings(schemes, regimes):
            for p, nu in variants.items():
                cells = {
                    "clean": accuracy(cfg, seed, regime, scheme),
                    "poisoned": accuracy(cfg, seed, regime, scheme, nu),
                }
                if target is not None:
                    cells |= {
                        "clean_pred": prediction(cfg, seed, regime, scheme, None, target),
                        "poisoned_pred": prediction(cfg, seed, regime, scheme, nu, target),
                    }
                if trigger:
                    cells |= {
                        "clean_asr": backdoor(cfg, seed, regime, scheme, None, nu),
                        "asr": backdoor(cfg, seed, regime, scheme, nu, nu),
                    }
                out.append(
                    (
                        {
                            "seed": seed,
                            "regime": regime,
                            "scheme": scheme.name,
                            "bits": scheme.w_bits,
                            "a_bits": scheme.a_bits,
                            "pixels": p,
                            "poison": nu,
                        },
                        cells,
                    )
                )
    return out


def cells(
    cfg: Preset,
    poison_path: str | None = None,
    schemes: list[str] = SCHEMES,
    regimes: list[str] = EVAL_REGIMES,
    pixels: str = "float",
) -> list:
    entries = grid(cfg, poison_path, schemes, regimes, pixels)
    return grid_cells(entries) + list({id(e[0]["poison"]): e[0]["poison"] for e in entries}.values())


def run(
    cfg: Preset,
    poison_path: str | None = None,
    schemes: list[str] = SCHEMES,
    regimes: list[str] = EVAL_REGIMES,
    pixels: str = "float",
    progress: bool = True,
) -> dict:
    """{"runs": one tidy row per seed, setting and pixel variant (clean and poisoned accuracy, drop = poisoned −
    clean; for a targeted file the predictions; for a backdoor's the attack success rates of the poisoned and the
    clean model, ``asr`` and ``clean_asr``), "poison": the ν read (as read), "file": the path it was read from,
    "target": (test index, true class, adversarial class) or None}."""
    entries = grid(cfg, poison_path, schemes, regimes, pixels)
    ensure(cells(cfg, poison_path, schemes, regimes, pixels), progress)
    nu_cell = next(labels["poison"] for labels, _ in entries if labels["pixels"] == "float")
    nu = nu_cell.value()[0]
    target = None
    if (index := nu.provenance.get("target_index")) is not None:
        target = (index, int(test_split(cfg.dataset).y[index]), nu.provenance["adversarial_class"])
    rows = []
    for labels, c in entries:
        clean, acc = c["clean"].value()["acc"], c["poisoned"].value()["acc"]
        row = {k: v for k, v in labels.items() if k != "poison"} | {"clean_acc": clean, "acc": acc, "drop": acc - clean}
        if target is not None:
            row |= {"clean_pred": c["clean_pred"].value()["pred"], "pred": c["poisoned_pred"].value()["pred"]}
        if "asr" in c:
            row |= {"clean_asr": c["clean_asr"].value()["asr"], "asr": c["asr"].value()["asr"]}
        rows.append(row)
    file = poison_path or str(export_path(nu_cell.inputs[0]))
    return {"runs": pd.DataFrame(rows), "poison": nu, "file": file, "target": target}


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per regime, scheme and pixel variant: mean clean and poisoned accuracy, and the drop's mean with its paired
    95% interval over seeds (``stats.paired``: the poisoned and the clean model of each seed), p and n."""
    out = []
    for key, g in runs.groupby(KEYS, sort=False):
        t = paired(g["drop"])
        out.append(
            dict(zip(KEYS, key))
            | {
                "bits": g.bits.iloc[0],
                "clean_acc": g.clean_acc.mean(),
                "acc": g.acc.mean(),
                "drop": t["mean"],
                "low": t["low"],
                "high": t["high"],
                "p": t["p"],
                "n": t["n"],
            }
        )
    return pd.DataFrame(out)


def table(result: dict) -> pd.DataFrame:
    """The grid's table: per setting, clean and poisoned accuracy, the drop (points) with its 95% interval, p, n."""
    s = summary(result["runs"])
    return pd.DataFrame(
        {
            "clean acc.": s.clean_acc.map(percent),
            "poisoned acc.": s.acc.map(percent),
            "drop (points)": s["drop"].map(points),
            "95% interval": [
                ("" if pd.isna(lo) else f"[{100 * lo:+.2f}, {100 * hi:+.2f}]") for lo, hi in zip(s.low, s.high)
            ],
            "p": s.p.map(lambda p: "" if pd.isna(p) else f"{p:.3g}"),
            "seeds": s.n,
        }
    ).set_index([s.regime, s.scheme] + ([s.pixels] if s.pixels.nunique() > 1 else []))


def survival(result: dict) -> pd.DataFrame | None:
    """With ``pixels`` "uint8": per setting, the drop of the poison as read and rounded to 8-bit images, and the
    change (uint8 − float, paired by seed, 95% interval); None otherwise."""
    runs = result["runs"]
    if runs.pixels.nunique() < 2:
        return None
    wide = runs.pivot_table(index=["regime", "scheme", "seed"], columns="pixels", values="drop", sort=False)
    out = []
    for (regime, scheme), g in wide.groupby(level=[0, 1], sort=False):
        t = paired(g["uint8"] - g["float"])
        out.append(
            {
                "regime": regime,
                "scheme": scheme,
                "drop as read": points(g["float"].mean()),
                "drop as uint8": points(g["uint8"].mean()),
                "change (points)": points(t["mean"]),
                "95% interval": "" if pd.isna(t["low"]) else f"[{100 * t['low']:+.2f}, {100 * t['high']:+.2f}]",
                "p": t["p"],
            }
        )
    return pd.DataFrame(out).set_index(["regime", "scheme"])


def rates(result: dict) -> pd.DataFrame | None:
    """For a targeted file: per setting, the success rate (the target predicted as the adversarial class) and the
    misclassification rate (not its true class) of the poisoned and the clean models over seeds, k/n with Wilson 95%
    intervals, as notebook 05 reports them; None for an untargeted file."""
    if result["target"] is None:
        return None
    _, true, adversarial = result["target"]
    out = []
    for key, g in result["runs"].groupby(KEYS, sort=False):
        for models, pred in (("poisoned", g.pred), ("clean", g.clean_pred)):
            row = dict(zip(KEYS, key)) | {"models": models}
            for outcome, hits in (("success", pred == adversarial), ("misclassification", pred != true)):
                r = rate(int(hits.sum()), len(hits))
                row[outcome] = (
                    f"{r['k']}/{r['n']} = {100 * r['rate']:.0f}% [{100 * r['low']:.0f}, {100 * r['high']:.0f}]"
                )
            out.append(row)
    return pd.DataFrame(out).set_index(["regime", "scheme", "pixels", "models"])


def backdoor_table(result: dict) -> pd.DataFrame | None:
    """For a backdoor's file: per setting, the attack success rate of the poisoned models and of the clean models on
    the same triggered test images (the baseline), means over seeds, and their difference with its paired 95% interval
    over seeds (``stats.paired``), p and n; None for a file without a trigger."""
    runs = result["runs"]
    if "asr" not in runs:
        return None
    out = []
    for key, g in runs.groupby(KEYS, sort=False):
        t = paired(g.asr - g.clean_asr)
        out.append(
            dict(zip(KEYS, key))
            | {
                "ASR": percent(g.asr.mean()),
                BASELINE: percent(g.clean_asr.mean()),
                "ASR − baseline (points)": points(t["mean"]),
                "95% interval": "" if pd.isna(t["low"]) else f"[{100 * t['low']:+.2f}, {100 * t['high']:+.2f}]",
                "p": "" if pd.isna(t["p"]) else f"{t['p']:.3g}",
                "seeds": t["n"],
            }
        )
    index = ["regime", "scheme"] + (["pixels"] if runs.pixels.nunique() > 1 else [])
    return pd.DataFrame(out).set_index(index).drop(columns=[k for k in KEYS if k not in index])


def scheme_order(runs: pd.DataFrame) -> list[str]:
    """Scheme names by weight bits, then activation bits, fp last."""
    first = runs.drop_duplicates("scheme")
    order = (
        first.assign(fp=first.scheme == "fp")
        .fillna({"bits": 0, "a_bits": 0})
        .sort_values(["fp", "bits", "a_bits", "scheme"])
    )
    return list(order.scheme)


def figure(result: dict) -> plt.Axes:
    """The drop against bits, one line per regime (mean ± std over seeds; fp is the one point of regime fp)."""
    runs = result["runs"]
    runs = runs.assign(
        drop=100 * runs["drop"], line=runs.regime + runs.pixels.map(lambda p: "" if p == "float" else f" ({p})")
    )
    ax = sns.pointplot(
        data=runs, x="scheme", y="drop", hue="line", order=scheme_order(runs), errorbar="sd", dodge=0.25, capsize=0.1
    )
    ax.axhline(0, c="grey", lw=0.8)
    ax.set(
        xlabel="scheme (bits)",
        ylabel="accuracy drop (points, mean ± std over seeds)",
        title=f"{Path(result['file']).name}: drop against bits",
    )
    ax.legend(title="regime")
    return ax


def images(cfg: Preset, result: dict, count: int = 6) -> plt.Figure:
    """The first ``count`` poisons (top) beside their source images in the training set (bottom; blank where the file
    gave none or the source lies outside the preset's training set), with their labels."""
    nu: PoisonSet = result["poison"]
    train, _ = load_data(cfg)
    count = min(count, len(nu))
    fig, axes = plt.subplots(2, count, figsize=(1.6 * count, 3.6), squeeze=False)
    show = lambda ax, x: ax.imshow(x.clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
    for i in range(count):
        show(axes[0, i], nu.x[i])
        axes[0, i].set_title(f"poison, y={int(nu.y[i])}", fontsize=8)
        j = int(nu.indices[i])
        if j >= 0:
            show(axes[1, i], train.x[j])
            axes[1, i].set_title(f"source, y={int(train.y[j])}", fontsize=8)
        else:
            axes[1, i].text(0.5, 0.5, "no source\nin the\ntraining set", ha="center", va="center", fontsize=7)
        for ax in axes[:, i]:
            ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def provenance_table(result: dict) -> pd.DataFrame:
    """What was read and detected, and the provenance the file carried (a qlib export's attack, settings, seed)."""
    nu = result["poison"]
    read = nu.provenance.get("read", {})
    made = nu.provenance.get("made", {})
    rows = {
        "file": result["file"],
        "read as": describe(nu),
        "sha256": read.get("sha256", ""),
        **{f"made by: {k}": v for k, v in made.items() if k not in ("objective",)},
    }
    return pd.Series({k: str(v) for k, v in rows.items()}, name="value").to_frame()


def headline(cfg: Preset, result: dict) -> str:
    """What this shows: the FP drop, the largest and smallest quantized drops and whether each interval excludes 0."""
    s = summary(result["runs"])
    s = s[s.pixels == "float"]
    described = lambda r: (
        f"{r.regime} {r.scheme} {points(r['drop'])} points"
        + ("" if pd.isna(r.p) else f" ({'p ≤ ' + str(ALPHA) if r.p <= ALPHA else 'not distinguishable from 0'})")
    )
    quantized = s[s.regime != "fp"].sort_values("drop")
    parts = [described(r) for _, r in s[s.regime == "fp"].iterrows()]
    if len(quantized):
        parts += [f"most hurt {described(quantized.iloc[0])}", f"least hurt {described(quantized.iloc[-1])}"]
    text = (
        f"**{Path(result['file']).name} on {cfg.dataset} ({cfg.model}, {len(cfg.seeds)} seed(s), "
        f"{len(result['poison'])} poisons, ε_d = {result['poison'].eps_d:.3g}):** accuracy drops against the "
        f"clean model of the same scheme, seed and regime: " + "; ".join(parts) + "."
    )
    if (surv := survival(result)) is not None:
        text += (
            " Rounded to 8-bit images, the drop changes by "
            + ", ".join(f"{r} {sc} {change}" for (r, sc), change in zip(surv.index, surv["change (points)"]))
            + " points."
        )
    if (b := backdoor_table(result)) is not None:
        said = [f"{' '.join(k) if isinstance(k, tuple) else k} {r['ASR']} ({r[BASELINE]})" for k, r in b.iterrows()]
        text += " Attack success rate (the clean models' in brackets): " + "; ".join(said) + "."
    if (r := rates(result)) is not None:
        poisoned = r.xs("poisoned", level="models")
        text += (
            " Target success per setting: "
            + "; ".join(f"{k[0]} {k[1]} {v}" for k, v in poisoned["success"].items())
            + "."
        )
    return text
