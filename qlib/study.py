"""Study runners: each returns tidy pandas DataFrames that a notebook shows and plots."""

import inspect
import os
import signal
import time
from dataclasses import asdict
from typing import Sized

import pandas as pd
from tqdm import tqdm

from . import data, numerics, paper
from .attacks import ATTACKS, run_attack
from .cache import cached_model, cached_poison, cached_result
from .attacks.gradpc import gradpc, paq, squared_distance
from .models import create_model
from .poison import PoisonSet
from .presets import Preset
from .quant import QuantScheme, parse_scheme, prepare_qat, ptq, quantized_state
from .train import evaluate, fit

# The paper's schemes (Section 4.1): PTQ at 1, 4, 8 bits (Table 1) and QAT rows of Table 3.
PTQ_SCHEMES = [parse_scheme("1W", "bnn"), parse_scheme("4W"), parse_scheme("8W")]
QAT_SCHEMES = [
    parse_scheme("1W", "bnn"), parse_scheme("1W1A", "bnn"), parse_scheme("1W", "bnn++"), parse_scheme("1W1A", "bnn++"),
    parse_scheme("4W"), parse_scheme("4W4A"), parse_scheme("8W"), parse_scheme("8W8A"),
]
FP = parse_scheme("fp")


def load_data(cfg: Preset) -> tuple[data.Dataset, data.Dataset]:
    """The preset's training and test sets. Subsets are drawn with seed 0, so every seed sees the same data. Every
    runner starts here, so this is also where the preset's numeric policy is set (``numerics.configure``)."""
    numerics.configure(cfg.deterministic)
    train = data.load(cfg.dataset, "train").subset(cfg.train_size, seed=0)
    test = data.load(cfg.dataset, "test").subset(cfg.test_size, seed=0)
    return train, test


TRAIN_FIELDS = ("dataset", "model", "width", "train_size", "epochs", "batch_size", "lr", "weight_decay", "augment")


def model_key(cfg: Preset, seed: int, scheme: QuantScheme, train: Sized, poison: PoisonSet | None = None) -> dict:
    """Everything that determines the model :func:`trained_model` returns, less its curve: its cache key."""
    return {**{f: getattr(cfg, f) for f in TRAIN_FIELDS}, "seed": seed, "scheme": asdict(scheme), "train_n": len(train),
            "poison": poison.digest() if poison is not None else None}


def trained_key(cfg: Preset, seed: int, scheme: QuantScheme, train: Sized, poison: PoisonSet | None = None,
                curve: bool = True) -> dict:
    """The cache key of :func:`trained_model`'s entry: :func:`model_key`, marked when a FP model has no curve."""
    return model_key(cfg, seed, scheme, train, poison) | ({} if curve or not scheme.is_fp else {"curve": False})


def trained_model(cfg: Preset, seed: int, scheme: QuantScheme, train: data.Dataset, test: data.Dataset,
                  poison: PoisonSet | None = None, curve: bool = True):
    """The model of ``cfg`` trained from ``seed`` on μ (``train``) or on the set ``poison`` makes (μ+ν, or μ with
    its images replaced for unlearnable examples; see ``data.mix``): full precision, or QAT under ``scheme``.
    A full-precision model records its test accuracy after every epoch (notebook 00's learning curve) unless
    ``curve`` is False (same weights, a cache entry of its own). Cached on disk, returned on the preset's device;
    returns (model, per-epoch history)."""
    train_set = train if poison is None else data.mix(train, poison)

    def build():
        model = create_model(cfg.model, train, cfg.width, seed)
        return model if scheme.is_fp else prepare_qat(model, scheme)

    def run(model):
        history = fit(  # per-epoch test accuracy only for FP, whose learning curve notebook 00 plots
            model, train_set, test if scheme.is_fp and curve else None, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
            weight_decay=cfg.weight_decay, augment=cfg.augment, seed=seed, device=cfg.device, progress=False,
            counted_as=scheme.name,
        )
        return {"history": history}

    model, result = cached_model("trained", trained_key(cfg, seed, scheme, train, poison, curve), build, run, cfg.device)
    return model, result["history"]


GRADPC = {"lr": 1.0, "epochs": 1}  # GradPC's settings for the targets of GC and GC-Q


def target_key(cfg: Preset, seed: int, train: Sized) -> dict:
    """The cache key of :func:`gradpc_target`'s entry."""
    return {"clean": model_key(cfg, seed, FP, train), "eps_w": cfg.eps_w, "gradpc": GRADPC}


def gradpc_target(cfg: Preset, seed: int, train: data.Dataset, test: data.Dataset):
    """ŵ: GradPC of the seed's clean FP model within ε_w = ``cfg.eps_w`` (the target of GC and GC-Q). Cached.

    Returns (ŵ, {"eps_w": measured ‖ŵ − w_c‖², "seconds": GradPC's wall time})."""
    clean, _ = trained_model(cfg, seed, FP, train, test)

    def corrupt(model):
        start = time.perf_counter()
        model.load_state_dict(gradpc(clean, train, eps_w=cfg.eps_w, batch_size=cfg.batch_size, seed=seed, **GRADPC).state_dict())
        eps = squared_distance(list(model.state_dict().values()), list(clean.state_dict().values()))
        return {"eps_w": eps, "seconds": time.perf_counter() - start}

    target, result = cached_model("target", target_key(cfg, seed, train), lambda: create_model(cfg.model, train, cfg.width, seed), corrupt, cfg.device)
    return target.eval(), result


QUANTIZATION_AWARE = {"gc_q": "gc", "tgda_q": "tgda"}


def attack_params(cfg: Preset, name: str) -> dict:
    """The preset's hyperparameters of attack ``name`` (those of GC for GC-Q, of TGDA for TGDA-Q)."""
    base = QUANTIZATION_AWARE.get(name, name)
    if base == "gc":
        return {"epochs": cfg.gc_epochs, "lr": cfg.gc_lr, "optimizer": cfg.gc_optimizer, "chunk": cfg.gc_chunk}
    if base == "tgda":
        return {"epochs": cfg.tgda_epochs, "leader_lr": cfg.tgda_lr, "follower_steps": cfg.tgda_follower_steps,
                "cg_iters": cfg.tgda_cg_iters, "batch_size": cfg.tgda_batch_size, "chunk": cfg.tgda_chunk}
    ATTACKS.get(name)
    return dict(cfg.unlearnable.get(name, {}))


TRAINED_SURROGATE = ("tgda", "tgda_q", "tap")  # attacks whose ``model`` is the seed's clean FP model


def surrogate(cfg: Preset, name: str, seed: int, train: data.Dataset, test: data.Dataset):
    """The ``model`` argument of attack ``name``: the seed's clean FP model (TGDA's follower, TAP's surrogate),
    a freshly initialised one of the preset's architecture (EM, REM and DC train their own), or None."""
    if name in TRAINED_SURROGATE:
        return trained_model(cfg, seed, FP, train, test)[0]
    if "model" in inspect.signature(ATTACKS.get(name)).parameters:
        return create_model(cfg.model, train, cfg.width, seed)
    return None


def poison_key(cfg: Preset, name: str, seed: int, eps_d: float, train: Sized, scheme: QuantScheme | None = None,
               **switches) -> tuple[dict, dict]:
    """(the cache key of :func:`attack_poison`'s entry, the attack's keyword arguments from the preset and ``switches``)."""
    params = {**attack_params(cfg, name), **switches}
    base, aware = QUANTIZATION_AWARE.get(name, name), name in QUANTIZATION_AWARE
    if aware and (scheme is None or scheme.is_fp):
        raise ValueError(f"attack {name!r} is quantization-aware and needs a quantized scheme, got {scheme}")
    key = {"attack": name, "eps_d": eps_d, "seed": seed, "params": dict(params), "scheme": asdict(scheme) if aware else None,
           "clean": model_key(cfg, seed, FP, train)}
    if base == "gc":
        key["eps_w"] = cfg.eps_w
    return key, params


def attack_poison(cfg: Preset, name: str, seed: int, eps_d: float, train: data.Dataset, test: data.Dataset,
                  scheme: QuantScheme | None = None, **switches) -> tuple[PoisonSet, float]:
    """ν of attack ``name`` at budget ``eps_d`` against the seed's models, with the preset's hyperparameters.

    GC and GC-Q aim at the seed's GradPC target ŵ; TGDA and TGDA-Q start their follower from the seed's clean
    model w_c, and the unlearnable examples take theirs from :func:`surrogate`; the quantization-aware attacks (``gc_q``, ``tgda_q``) need the ``scheme`` they target, the
    others ignore it. ``switches`` are further keyword arguments of the attack (GC-Q's ``paq`` and
    ``quantized_grad`` for Table 4); they join the cache key. Cached on disk; returns (ν, the attack's wall
    time when it ran)."""
    key, params = poison_key(cfg, name, seed, eps_d, train, scheme, **switches)
    if name in QUANTIZATION_AWARE:
        params["scheme"] = scheme

    def make():
        if QUANTIZATION_AWARE.get(name, name) == "gc":
            params["target"] = gradpc_target(cfg, seed, train, test)[0]
        elif (model := surrogate(cfg, name, seed, train, test)) is not None:
            params["model"] = model
        if name != "label_flip":
            params["device"] = cfg.device
        return run_attack(name, train, eps_d, seed, **params)

    return cached_poison(key, make, train, cfg.device)


REGIMES = ("fp", "ptq", "qat")


def accuracy_key(cfg: Preset, seed: int, regime: str, scheme: QuantScheme, train: Sized, test: Sized,
                 nu: PoisonSet | None) -> dict:
    """The cache key of the test accuracy :func:`retrain_and_evaluate` reads for ``regime`` and ``scheme``."""
    trained_as = scheme if regime == "qat" else FP
    return {"model": model_key(cfg, seed, trained_as, train, nu), "regime": regime, "scheme": asdict(scheme),
            "test_size": cfg.test_size, "test_n": len(test)}


def retrain_and_evaluate(poison: PoisonSet, scheme: QuantScheme, regime: str, cfg: Preset, seed: int,
                         train: data.Dataset, test: data.Dataset) -> dict:
    """Train on μ+ν in ``regime`` and report test accuracy and its drop against the clean model of the same
    scheme, regime and seed (Section 4.1's evaluation).

    - ``fp``: train in full precision from scratch (``scheme`` must be fp);
    - ``ptq``: train in full precision, then apply PTQ under ``scheme`` (activation scales calibrated on the
      data the model was trained on);
    - ``qat``: QAT-train under ``scheme`` from scratch.
    Every trained model and every evaluation is cached, so a rerun, or a killed run restarted, redoes no
    finished work.
    """
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; valid: {', '.join(REGIMES)}")
    if (regime == "fp") != scheme.is_fp:
        raise ValueError(f"regime {regime!r} does not go with scheme {scheme.name!r}: fp takes 'fp', ptq and qat a quantized one")

    trained_as = scheme if regime == "qat" else FP

    def accuracy(nu):
        def compute():
            model, _ = trained_model(cfg, seed, trained_as, train, test, nu)
            if regime == "ptq":
                model = ptq(model, scheme, calib=train if nu is None else data.mix(train, nu))
            return {"acc": evaluate(model, test)}

        return cached_result("accuracy", accuracy_key(cfg, seed, regime, scheme, train, test, nu), compute, cfg.device)["acc"]

    clean_acc, acc = accuracy(None), accuracy(poison)
    return {"regime": regime, "scheme": scheme.name, "seed": seed, "attack": poison.provenance["attack"],
            "eps_d": poison.eps_d, "clean_acc": clean_acc, "acc": acc, "drop": acc - clean_acc}


def attack_grid(cfg: Preset, attacks: list[str], eps_ds: list[float], cells: list[tuple[str, QuantScheme]]) -> list[tuple]:
    """The cells (seed, attack, ε_d, regime, scheme) of :func:`attack_drops`: quantization-aware attacks skip FP."""
    return [(seed, name, eps_d, regime, scheme) for seed in cfg.seeds for name in attacks for eps_d in eps_ds
            for regime, scheme in cells if not (name in QUANTIZATION_AWARE and scheme.is_fp)]


def attack_drops(cfg: Preset, attacks: list[str], eps_ds: list[float], cells: list[tuple[str, QuantScheme]],
                 progress: bool = True) -> pd.DataFrame:
    """The accuracy drop of each attack at each budget in each (regime, scheme) cell, once per seed.

    Quantization-oblivious poisons are made once per seed and budget and reused in every cell; the
    quantization-aware ones (GC-Q, TGDA-Q) are made per scheme and skip full-precision cells. One tidy row per
    seed, attack, ε_d and cell, with the attack's wall time and, for GC and GC-Q, its objective (initial, final).
    One progress bar counts the cells of the whole grid.
    """
    train, test = load_data(cfg)
    grid = attack_grid(cfg, attacks, eps_ds, cells)
    rows = []
    bar = tqdm(grid, desc="attack grid", disable=not progress)
    for seed, name, eps_d, regime, scheme in bar:
        bar.set_postfix(cell=f"{name} ε_d={eps_d} {regime} {scheme.name} s{seed}")
        poison, seconds = attack_poison(cfg, name, seed, eps_d, train, test, scheme)
        row = retrain_and_evaluate(poison, scheme, regime, cfg, seed, train, test)
        objective = poison.provenance.get("objective", {})
        rows.append({**row, "method": scheme.method, "attack_seconds": seconds, "objective_initial": objective.get("initial"),
                     "objective_final": objective.get("final"), "objective_steps": objective.get("steps"),
                     "norm": poison.provenance.get("norm"), "eps": poison.provenance.get("eps")})
        _kill_for_test(len(rows))
    return pd.DataFrame(rows)


def _kill_for_test(cells_done: int) -> None:
    """Test hook (tests/test_resume.py): with ``QLIB_TEST_KILL_AFTER_CELLS=k`` the process SIGKILLs itself once k
    cells of a grid are in the cache, so the kill-and-resume test is exact rather than a race against the clock."""
    if cells_done == int(os.environ.get("QLIB_TEST_KILL_AFTER_CELLS", -1)):
        os.kill(os.getpid(), signal.SIGKILL)


def clean_baselines(cfg: Preset, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train the clean full-precision model once per seed.

    Returns (one row per seed: final test accuracy and training time; one row per seed and epoch: the curve).
    """
    train, test = load_data(cfg)
    finals, curves = [], []
    bar = tqdm(cfg.seeds, desc="clean FP", disable=not progress)
    for seed in bar:
        _, history = trained_model(cfg, seed, FP, train, test)
        finals.append({"seed": seed, "test_acc": history[-1]["test_acc"], "train_seconds": sum(h["seconds"] for h in history)})
        curves += [{"seed": seed, **h} for h in history]
        bar.set_postfix(seed=seed, test_acc=f"{history[-1]['test_acc']:.4f}")
    return pd.DataFrame(finals), pd.DataFrame(curves)


def clean_schemes(cfg: Preset, progress: bool = True) -> pd.DataFrame:
    """Clean test accuracy under every scheme of the paper, once per seed (one tidy row per scheme and seed).

    PTQ quantizes the seed's trained FP model (eq. 8; activation scales, if any, calibrated on training data);
    QAT trains the same initialisation from scratch under the scheme (eqs. 9-10).
    """
    train, test = load_data(cfg)
    rows = []
    bar = tqdm(total=len(cfg.seeds) * (1 + len(PTQ_SCHEMES) + len(QAT_SCHEMES)), desc="clean schemes", disable=not progress)

    def add(regime, scheme, seed, model, seconds):
        rows.append({"regime": regime, "scheme": scheme.task, "method": scheme.method, "seed": seed,
                     "test_acc": evaluate(model, test), "train_seconds": seconds})
        bar.set_postfix(cell=f"{regime} {scheme.name} s{seed}", acc=f"{rows[-1]['test_acc']:.4f}")
        bar.update()

    for seed in cfg.seeds:
        fp_model, history = trained_model(cfg, seed, FP, train, test)
        fp_seconds = sum(h["seconds"] for h in history)
        add("FP", FP, seed, fp_model, fp_seconds)
        for scheme in PTQ_SCHEMES:
            add("PTQ", scheme, seed, ptq(fp_model, scheme, calib=train), fp_seconds)
        for scheme in QAT_SCHEMES:
            model, history = trained_model(cfg, seed, scheme, train, test)
            add("QAT", scheme, seed, model, sum(h["seconds"] for h in history))
    bar.close()
    return pd.DataFrame(rows)


def gradpc_targets(cfg: Preset, progress: bool = True) -> pd.DataFrame:
    """Table 2: the GradPC target ŵ (ε_w = ``cfg.eps_w``) in FP and after PAQ at 8, 4 and 1 bit, one row per
    precision and seed.

    ``drop`` is against the clean FP model (as in the paper's Table 2) and ``drop_vs_ptq`` against the clean
    model quantized the same way. ε_w is reported twice for PAQ: ‖P_Q(ŵ) − P_Q(w_c)‖² (``eps_w``, distance to
    the clean model of the same precision) and ‖P_Q(ŵ) − w_c‖² (``eps_w_to_fp``); the paper does not say which.
    """
    train, test = load_data(cfg)
    rows = []
    for seed in tqdm(cfg.seeds, desc="GradPC targets", disable=not progress):
        clean, _ = trained_model(cfg, seed, FP, train, test)
        clean_acc = evaluate(clean, test)
        target, result = gradpc_target(cfg, seed, train, test)
        acc = evaluate(target, test)
        rows.append({"precision": "FP", "seed": seed, "clean_acc": clean_acc, "acc": acc, "drop": acc - clean_acc,
                     "drop_vs_ptq": acc - clean_acc, "eps_w": result["eps_w"], "eps_w_to_fp": result["eps_w"]})
        for scheme in reversed(PTQ_SCHEMES):
            target_q, clean_q = paq(target, scheme), ptq(clean, scheme)
            w_star, w_c_star = quantized_state(target_q), quantized_state(clean_q)
            acc = evaluate(target_q, test)
            rows.append({"precision": f"{scheme.w_bits}-bit", "seed": seed, "clean_acc": clean_acc, "acc": acc,
                         "drop": acc - clean_acc, "drop_vs_ptq": acc - evaluate(clean_q, test),
                         "eps_w": squared_distance(list(w_star.values()), list(w_c_star.values())),
                         "eps_w_to_fp": squared_distance(list(w_star.values()), list(clean.state_dict().values()))})
    return pd.DataFrame(rows)


def scheme_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per scheme: our mean ± std over seeds, the change against our FP model, and the paper's numbers."""
    summary = mean_std(df, "test_acc", ["regime", "scheme", "method"])
    fp_ours = summary.loc[summary.regime == "FP", "mean"].item()
    fp_paper = paper.CLEAN[("FP", "fp", "fp")]
    summary["vs_fp"] = summary["mean"] - fp_ours
    summary["paper"] = [paper.CLEAN.get(k) for k in zip(summary.regime, summary.scheme, summary.method)]
    summary["paper_vs_fp"] = summary["paper"] - fp_paper
    return summary


def scheme_checks(summary: pd.DataFrame, num_classes: int) -> pd.DataFrame:
    """The quantization acceptance marks, each with the measured value and whether our run meets it.

    "Within noise" allows the larger of the two schemes' seed standard deviations.
    """
    row = lambda regime, task: summary[(summary.regime == regime) & (summary.scheme == task)].iloc[0]
    fp, q8, p1, p4, p8 = row("FP", "fp"), row("QAT", "8W"), row("PTQ", "1W"), row("PTQ", "4W"), row("PTQ", "8W")
    qat_1w = summary[(summary.regime == "QAT") & (summary.scheme == "1W")]
    ordered = lambda lo, hi: lo["mean"] <= hi["mean"] + max(lo["std"], hi["std"])
    checks = [
        ("QAT 8W within 1 point of FP", f"{100 * (q8['mean'] - fp['mean']):+.2f} points", abs(q8["mean"] - fp["mean"]) <= 0.01),
        ("PTQ 8-bit within 0.5 points of FP", f"{100 * (p8['mean'] - fp['mean']):+.2f} points", abs(p8["mean"] - fp["mean"]) <= 0.005),
        ("PTQ accuracy ordered 1 ≤ 4 ≤ 8 bits (within noise)",
         f"{100 * p1['mean']:.2f} / {100 * p4['mean']:.2f} / {100 * p8['mean']:.2f}%", ordered(p1, p4) and ordered(p4, p8)),
        (f"QAT 1W well above chance ({100 / num_classes:.0f}%)",
         " / ".join(f"{m}: {100 * a:.2f}%" for m, a in zip(qat_1w.method, qat_1w["mean"])), bool((qat_1w["mean"] > 2 / num_classes).all())),
    ]
    return pd.DataFrame(checks, columns=["claim", "measured", "holds"])


def mean_std(df: pd.DataFrame, value: str, by: list[str] | None = None) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1; 0 for a single seed) and count of ``value``, grouped by ``by``."""
    grouped = df.groupby(by, sort=False)[value] if by else df[value].to_frame().groupby(lambda _: 0)[value]
    out = grouped.agg(mean="mean", std="std", n="count").fillna({"std": 0.0})
    return out.reset_index(drop=not by)


def fmt_pct(mean: float, std: float) -> str:
    """``89.31% ± 0.22`` from fractions."""
    return f"{100 * mean:.2f}% ± {100 * std:.2f}"
