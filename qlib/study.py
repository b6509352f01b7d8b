"""Study runners: each returns tidy pandas DataFrames that a notebook shows and plots."""

import pandas as pd
from tqdm import tqdm

from . import data
from .models import create_model
from .presets import Preset
from .train import fit


def load_data(cfg: Preset) -> tuple[data.Dataset, data.Dataset]:
    """The preset's training and test sets. Subsets are drawn with seed 0, so every seed sees the same data."""
    train = data.load(cfg.dataset, "train").subset(cfg.train_size, seed=0)
    test = data.load(cfg.dataset, "test").subset(cfg.test_size, seed=0)
    return train, test


def clean_baselines(cfg: Preset, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train the clean full-precision model once per seed.

    Returns (one row per seed: final test accuracy and training time; one row per seed and epoch: the curve).
    """
    train, test = load_data(cfg)
    finals, curves = [], []
    bar = tqdm(cfg.seeds, desc="clean FP", disable=not progress)
    for seed in bar:
        model = create_model(cfg.model, train, cfg.width, seed)
        history = fit(
            model, train, test, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, weight_decay=cfg.weight_decay,
            augment=cfg.augment, seed=seed, device=cfg.device, progress=False,
        )
        finals.append({"seed": seed, "test_acc": history[-1]["test_acc"], "train_seconds": sum(h["seconds"] for h in history)})
        curves += [{"seed": seed, **h} for h in history]
        bar.set_postfix(seed=seed, test_acc=f"{history[-1]['test_acc']:.4f}")
    return pd.DataFrame(finals), pd.DataFrame(curves)


def mean_std(df: pd.DataFrame, value: str, by: list[str] | None = None) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1; 0 for a single seed) and count of ``value``, grouped by ``by``."""
    grouped = df.groupby(by, sort=False)[value] if by else df[value].to_frame().groupby(lambda _: 0)[value]
    out = grouped.agg(mean="mean", std="std", n="count").fillna({"std": 0.0})
    return out.reset_index(drop=not by)


def fmt_pct(mean: float, std: float) -> str:
    """``89.31% ± 0.22`` from fractions."""
    return f"{100 * mean:.2f}% ± {100 * std:.2f}"
