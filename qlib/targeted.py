"""The targeted experiment of Section 4.3: gradient matching against full-precision training and QAT at 1, 3, 4,
5 and 8 bits, as tidy runs, success rates with binomial confidence intervals, and the paper's claims tested.

A *trial* is one target and one seed s. The attacker trains a clean surrogate from seed s and crafts
``cfg.targeted_eps_d`` poisons (the paper: 1%) against it: in full precision (quantization-oblivious poisons,
used against every precision), or through the clean QAT model of each scheme (quantization-aware poisons, used
against that scheme). The victim is trained from scratch on μ with the poisons in place, from another seed (s + ``VICTIM_SEED``: a
fresh initialisation and batch order the attacker does not know, Witches' Brew's validation). The attack
succeeds when the victim puts the target in the adversarial class; the paper's looser criterion is any
misclassification. Clean victims of the same seeds give the rates without poisons.
"""

import math
from typing import Sized
from dataclasses import replace

import pandas as pd
import torch
from tqdm import tqdm

from . import data
from .attacks.gradient_matching import gradient_matching
from .cache import cached_poison, cached_result
from .poison import PoisonSet
from .presets import Preset
from .quant import QuantScheme, parse_scheme
from .study import FP, load_data, model_key, trained_model
from .tables import precision, verdict
from .train import evaluate

QAT_SCHEMES = [parse_scheme("1W", "bnn"), parse_scheme("3W"), parse_scheme("4W"), parse_scheme("5W"), parse_scheme("8W")]
PRECISIONS = [FP] + QAT_SCHEMES  # the paper's: full precision and QAT at 1, 3, 4, 5, 8 bits (weights)
VICTIM_SEED = 1000  # victims train from seed s + 1000, the surrogate of trial s from seed s
POISONS = ("none", "oblivious", "aware")
Z95 = 1.959963984540054
ACCURACY_IMAGES = 2000  # a victim's test accuracy is read on this many test images (class-balanced, seed 0)


def targeted_preset(cfg: Preset) -> Preset:
    """``cfg`` with the targeted experiment's training-set size and epochs (``targeted_train_size``, ``targeted_epochs``)."""
    return replace(cfg, train_size=cfg.targeted_train_size or cfg.train_size, epochs=cfg.targeted_epochs or cfg.epochs)


def choose_targets(cfg: Preset, train: data.Dataset, test: data.Dataset) -> pd.DataFrame:
    """``cfg.targets`` test images and their adversarial classes, drawn from seed 0: targets uniformly among the
    test images the clean FP surrogate of the first trial seed classifies correctly (the clean victims, ``none``,
    are the control for the others), each adversarial class uniformly among the other classes (Witches' Brew's
    draw). ``cfg`` is the targeted preset (``targeted_preset``), as for ``poison`` and ``victim``."""
    surrogate = trained_model(cfg, cfg.targeted_seeds[0], FP, train, test, curve=False)[0].eval()
    dev = next(surrogate.parameters()).device
    with torch.no_grad():
        pred = torch.cat([surrogate(test.x[i:i + 512].to(dev)).argmax(1).cpu() for i in range(0, len(test), 512)])
    correct = (pred == test.y).nonzero().flatten()
    if len(correct) < cfg.targets:
        raise ValueError(f"only {len(correct)} test images are classified correctly; targets={cfg.targets} asks for more")
    g = torch.Generator().manual_seed(0)
    index = correct[torch.randperm(len(correct), generator=g)[:cfg.targets]]
    shift = torch.randint(1, test.num_classes, (cfg.targets,), generator=g)
    return pd.DataFrame({"target": range(cfg.targets), "target_index": index.tolist(), "true_class": test.y[index].tolist(),
                         "adversarial_class": ((test.y[index] + shift) % test.num_classes).tolist()})


def poison_key(cfg: Preset, seed: int, target, scheme: QuantScheme, train: Sized) -> dict:
    """The cache key of :func:`poison`'s entry (``target``: a row with ``target_index`` and ``adversarial_class``)."""
    return {"attack": "gradient_matching", "eps_d": cfg.targeted_eps_d, "seed": seed, "params": dict(cfg.gradient_matching),
            "target_index": int(target.target_index), "adversarial_class": int(target.adversarial_class),
            "surrogate": model_key(cfg, seed, scheme, train), "test_size": cfg.test_size}


def poison(cfg: Preset, seed: int, target: pd.Series, scheme: QuantScheme, train: data.Dataset,
           test: data.Dataset) -> tuple[PoisonSet, float]:
    """The trial's poisons: gradient matching against the clean surrogate of ``seed``, through the QAT model of
    ``scheme`` unless it is FP. Cached; returns (ν, the attack's wall time when it ran)."""
    params = dict(cfg.gradient_matching)
    key = poison_key(cfg, seed, target, scheme, train)

    def make():
        surrogate = trained_model(cfg, seed, scheme, train, test, curve=False)[0]
        return gradient_matching(train, cfg.targeted_eps_d, seed, model=surrogate, target_image=test.x[int(target.target_index)],
                                 target_index=int(target.target_index), adversarial_class=int(target.adversarial_class),
                                 scheme=None if scheme.is_fp else scheme, device=cfg.device, **params)

    return cached_poison(key, make, train, cfg.device)


def victim_key(cfg: Preset, seed: int, scheme: QuantScheme, target, train: Sized, test: Sized, nu: PoisonSet | None) -> dict:
    """The cache key of :func:`victim`'s reading."""
    return {"model": model_key(cfg, seed + VICTIM_SEED, scheme, train, nu), "target_index": int(target.target_index),
            "test_size": cfg.test_size, "adversarial_class": int(target.adversarial_class), "test_n": len(test),
            "accuracy_images": ACCURACY_IMAGES}


def victim(cfg: Preset, seed: int, scheme: QuantScheme, target: pd.Series, train: data.Dataset, test: data.Dataset,
           nu: PoisonSet | None) -> dict:
    """Train the victim of seed ``seed`` + ``VICTIM_SEED`` under ``scheme`` (FP or QAT) on μ, or on μ with ``nu``
    in place, and read its prediction on the target and its test accuracy (on ``ACCURACY_IMAGES`` test images:
    on the full 10,000 the evaluation took a quarter of a victim's training time; for the same reason no
    per-epoch learning curve is recorded). Cached."""
    vseed = seed + VICTIM_SEED
    index = int(target.target_index)

    def compute():
        model = trained_model(cfg, vseed, scheme, train, test, nu, curve=False)[0].eval()
        with torch.no_grad():
            probs = model(test.x[index:index + 1].to(next(model.parameters()).device)).softmax(1)[0].cpu()
        acc = evaluate(model, test.subset(ACCURACY_IMAGES, seed=0))
        return {"pred": int(probs.argmax()), "p_adv": float(probs[int(target.adversarial_class)]), "acc": acc}

    return cached_result("targeted", victim_key(cfg, seed, scheme, target, train, test, nu), compute, cfg.device)


def trial_grid(cfg: Preset, targets: pd.DataFrame) -> list[tuple]:
    """The cells (target row, seed, precision, kind of poison) of :func:`targeted`; aware poisons skip FP."""
    return [(t, seed, scheme, kind) for t in targets.itertuples() for seed in cfg.targeted_seeds for scheme in PRECISIONS
            for kind in POISONS if not (kind == "aware" and scheme.is_fp)]


def check_seeds(cfg: Preset) -> None:
    """Trial seeds may not be victim seeds: a surrogate would also be another trial's victim."""
    if clash := sorted(set(cfg.targeted_seeds) & {s + VICTIM_SEED for s in cfg.targeted_seeds}):
        raise ValueError(f"targeted_seeds {cfg.targeted_seeds}: seed(s) {clash} would train a surrogate that is also "
                         f"another trial's victim (victims use seed + {VICTIM_SEED}); use distinct seeds below {VICTIM_SEED}")


def targeted(cfg: Preset, progress: bool = True) -> pd.DataFrame:
    """Every trial (target × seed) against every precision: clean victims, quantization-oblivious poisons, and
    quantization-aware poisons at each QAT precision. One tidy row per trial, precision and kind of poison."""
    cfg = targeted_preset(cfg)
    check_seeds(cfg)
    train, test = load_data(cfg)
    targets = choose_targets(cfg, train, test)
    grid = trial_grid(cfg, targets)
    rows = []
    bar = tqdm(grid, desc="targeted trials", disable=not progress)
    for t, seed, scheme, kind in bar:
        bar.set_postfix(cell=f"target {t.target} s{seed} {precision(scheme)} {kind}")
        nu, seconds = (None, None) if kind == "none" else poison(cfg, seed, t, FP if kind == "oblivious" else scheme, train, test)
        out = victim(cfg, seed, scheme, t, train, test, nu)
        objective = nu.provenance["objective"] if nu is not None else {}
        rows.append({"target": t.target, "target_index": t.target_index, "true_class": t.true_class,
                     "adversarial_class": t.adversarial_class, "seed": seed, "precision": precision(scheme),
                     "scheme": scheme.name, "poisons": kind, **out, "success": out["pred"] == t.adversarial_class,
                     "misclassified": out["pred"] != t.true_class, "attack_seconds": seconds,
                     "objective_initial": objective.get("initial"), "objective_final": objective.get("final")})
    return pd.DataFrame(rows)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a binomial rate k/n (Wilson 1927)."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"a binomial rate needs 0 ≤ k ≤ n and n ≥ 1, got k={k}, n={n}")
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (0.0 if k == 0 else centre - half), (1.0 if k == n else centre + half)  # exact ends: no rounding past k/n


def success_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per precision and kind of poison: successes (target → adversarial class) and misclassifications of the
    target, each as k of n trials, a rate and its Wilson 95% interval."""
    rows = []
    for (prec, kind), cell in df.groupby(["precision", "poisons"], sort=False):
        row = {"precision": prec, "poisons": kind, "n": len(cell), "victim_acc": cell.acc.mean()}
        for outcome in ("success", "misclassified"):
            k = int(cell[outcome].sum())
            low, high = wilson(k, len(cell))
            row |= {outcome: k, f"{outcome}_rate": k / len(cell), f"{outcome}_low": low, f"{outcome}_high": high}
        rows.append(row)
    return pd.DataFrame(rows)


def adversarial_shift(df: pd.DataFrame) -> pd.DataFrame:
    """How far the poisons move the victim toward the adversarial class even where the prediction does not flip:
    per precision and kind of poison, log10 of p(adversarial class | target) over the clean victim's of the same
    trial and precision (mean, std over trials) and how many trials it rose in (k of n, Wilson 95%)."""
    clean = df[df.poisons == "none"].set_index(["target", "seed", "precision"]).p_adv
    rows = []
    for (prec, kind), cell in df[df.poisons != "none"].groupby(["precision", "poisons"], sort=False):
        ratio = [math.log10(max(p, 1e-12) / max(clean.loc[(t, s, prec)], 1e-12)) for t, s, p in zip(cell.target, cell.seed, cell.p_adv)]
        k = sum(r > 0 for r in ratio)
        low, high = wilson(k, len(ratio))
        rows.append({"precision": prec, "poisons": kind, "n": len(ratio), "log10_ratio": sum(ratio) / len(ratio),
                     "log10_ratio_std": pd.Series(ratio).std(), "median_p_adv": cell.p_adv.median(), "rose": k,
                     "rose_low": low, "rose_high": high})
    return pd.DataFrame(rows)


def compare(better: pd.Series, worse: pd.Series, outcome: str = "success") -> str:
    """Is ``better``'s rate above ``worse``'s beyond noise? "holds" when the Wilson intervals do not overlap and
    ``better`` is higher, "fails" when they do not overlap the other way, else "within noise"."""
    if better[f"{outcome}_low"] > worse[f"{outcome}_high"]:
        return "holds"
    if worse[f"{outcome}_low"] > better[f"{outcome}_high"]:
        return "fails"
    return "within noise"


def targeted_claims(summary: pd.DataFrame, shift: pd.DataFrame) -> pd.DataFrame:
    """Section 4.3's claims, per QAT precision, on both outcomes (success, misclassification) and on the pull
    toward the adversarial class (``adversarial_shift``):

    - the attack works in full precision (FP success above the clean victims' rate; the pull is positive);
    - QAT "dramatically reduces the attack efficacy" (the FP rate, or pull, above each QAT precision's);
    - beyond the paper: quantization-aware poisons beat quantization-oblivious ones at each QAT precision.

    Rates are compared by their Wilson intervals (``compare``); pulls, mean log10 ratios over trials, as the other
    tables compare drops (``tables.verdict``: a gap beyond the larger standard deviation).
    """
    cell = summary.set_index(["precision", "poisons"]).loc
    pull = shift.set_index(["precision", "poisons"]).rename(columns={"log10_ratio": "mean", "log10_ratio_std": "std"}).loc
    qat = [precision(s) for s in QAT_SCHEMES]
    pct = lambda r, o: f"{100 * r[f'{o}_rate']:.0f}% ({int(r[o])}/{int(r['n'])})"
    rows = []
    for outcome in ("success", "misclassified"):
        add = lambda text, better, worse: rows.append({"outcome": outcome, "claim": text, "ours": f"{pct(better, outcome)} vs {pct(worse, outcome)}",
                                                       "our run": compare(better, worse, outcome)})
        add("FP: poisons beat no poisons", cell[("FP", "oblivious")], cell[("FP", "none")])
        for prec in qat:
            add(f"QAT {prec} lowers the FP rate", cell[("FP", "oblivious")], cell[(prec, "oblivious")])
        for prec in qat:
            add(f"QAT {prec}: aware beats oblivious", cell[(prec, "aware")], cell[(prec, "oblivious")])
    fp = pull[("FP", "oblivious")]
    rows.append({"outcome": "pull", "claim": "FP: poisons raise p(adv)", "ours": f"rose in {int(fp['rose'])}/{int(fp['n'])}",
                 "our run": "holds" if fp["rose_low"] > 0.5 else ("fails" if fp["rose_high"] < 0.5 else "within noise")})
    add = lambda text, better, worse: rows.append({"outcome": "pull", "claim": text, "our run": verdict(better, worse),
                                                   "ours": f"{better['mean']:+.2f} vs {worse['mean']:+.2f} (±{max(better['std'], worse['std']):.2f})"})
    for prec in qat:
        add(f"QAT {prec} lowers the FP pull", fp, pull[(prec, "oblivious")])
    for prec in qat:
        add(f"QAT {prec}: aware pulls more than oblivious", pull[(prec, "aware")], pull[(prec, "oblivious")])
    return pd.DataFrame(rows)
