"""Probe: what does GC's effect on a retrained FP model depend on? (Issue 4's investigation.)

For each seed and ε_w: the cached clean FP model, its GradPC target ŵ of squared budget ε_w, and the squared norm of the
clean gradient at ŵ (what the poisons must cancel); every step is a cached cell. Then for each ε_d: GC poisons,
retraining on μ+ν in full precision, and label flip at the same ε_d for comparison. One JSON line per (seed, ε_w, ε_d)
goes to stdout: target accuracy, GC objective initial → final, wall times and drops.

    .venv/bin/python bench/gc_probe.py --eps-w 0.01 0.05 --eps-d 0.03 0.1 --steps 100 --lr 0.1 \
        [--optimizer adam] [--retrain-epochs 8] [--seeds 0 1 2] [-o key=value ...]
"""

import argparse
import json
from dataclasses import replace

from qlib.attacks.gc import clean_gradient, gradient_parameters
from qlib.cells import accuracy, load_data, poison, target
from qlib.executors import compute
from qlib.paper import FP
from qlib.presets import load_preset


def drop(cfg, seed, nu) -> float:
    clean, poisoned = accuracy(cfg, seed, "fp", FP), accuracy(cfg, seed, "fp", FP, nu)
    compute([clean, poisoned], progress=False)
    return poisoned.value()["acc"] - clean.value()["acc"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--eps-w", type=float, nargs="+", default=[0.01])
    parser.add_argument("--eps-d", type=float, nargs="+", default=[0.03])
    parser.add_argument("--steps", type=int, default=100, help="GC steps")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--retrain-epochs", type=int, help="override the preset's (re)training epochs")
    parser.add_argument("--no-flip", action="store_true", help="skip the label-flip comparison")
    args = parser.parse_args()

    base_cfg = load_preset(
        args.preset,
        epochs=args.retrain_epochs,
        attacks={"gc": {"epochs": args.steps, "lr": args.lr, "optimizer": args.optimizer}},
    )
    train, _ = load_data(base_cfg)
    for seed in args.seeds:
        for eps_w in args.eps_w:
            cfg = replace(base_cfg, eps_w=eps_w)
            corrupted = target(cfg, seed)
            compute([corrupted, accuracy(cfg, seed, "fp", FP)], progress=False)
            model, result = corrupted.value()
            g = clean_gradient(model, gradient_parameters(model, "all"), train)
            base = {
                "seed": seed,
                "eps_w": eps_w,
                "clean_acc": accuracy(cfg, seed, "fp", FP).value()["acc"],
                "half_clean_grad_sq": 0.5 * sum((t**2).sum().item() for t in g),
                "retrain_epochs": cfg.epochs,
                "steps": args.steps,
                "lr": args.lr,
                "optimizer": args.optimizer,
                "train_size": len(train),
            }
            for eps_d in args.eps_d:
                gc = poison(cfg, "gc", seed, eps_d)
                row = {**base, "eps_d": eps_d, "gc_drop": drop(cfg, seed, gc)}
                nu, seconds = gc.value()
                row |= {
                    "gc_seconds": seconds,
                    **nu.provenance["objective"],
                    "mean_abs_dx": (nu.x - train.x[nu.indices]).abs().mean().item(),
                }
                if not args.no_flip:
                    row["flip_drop"] = drop(cfg, seed, poison(cfg, "label_flip", seed, eps_d))
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
