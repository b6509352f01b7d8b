"""Probe: what does GC's effect on a retrained FP model depend on? (Issue 4's investigation.)

For each seed and ε_w: the cached clean FP model, a GradPC target ŵ of squared budget ε_w, and the
squared norm of the clean gradient at ŵ (what the poisons must cancel). Then for each ε_d: GC poisons,
retraining on μ+ν in full precision, and label flip at the same ε_d for comparison. One JSON line per
(seed, ε_w, ε_d) goes to stdout: target accuracy, GC objective initial → final, wall times and drops.

    .venv/bin/python bench/gc_probe.py --eps-w 0.01 0.05 --eps-d 0.03 0.1 --steps 100 --lr 0.1 \
        [--optimizer adam] [--retrain-epochs 8] [--seeds 0 1 2] [-o key=value ...]
"""

import argparse
import json
import time

from qlib.attacks import run_attack
from qlib.attacks.gc import clean_gradient, gradient_parameters
from qlib.attacks.gradpc import gradpc
from qlib.presets import load_preset
from qlib.study import FP, load_data, retrain_and_evaluate, trained_model
from qlib.train import evaluate


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

    cfg = load_preset(args.preset, epochs=args.retrain_epochs)
    train, test = load_data(cfg)
    for seed in args.seeds:
        clean, _ = trained_model(cfg, seed, FP, train, test)
        for eps_w in args.eps_w:
            target = gradpc(clean, train, eps_w=eps_w, batch_size=cfg.batch_size, seed=seed).eval()
            g = clean_gradient(target, gradient_parameters(target, "all"), train)
            base = {"seed": seed, "eps_w": eps_w, "clean_acc": evaluate(clean, test), "target_acc": evaluate(target, test),
                    "half_clean_grad_sq": 0.5 * sum((t ** 2).sum().item() for t in g), "retrain_epochs": cfg.epochs,
                    "steps": args.steps, "lr": args.lr, "optimizer": args.optimizer, "train_size": len(train)}
            for eps_d in args.eps_d:
                start = time.time()
                poison = run_attack("gc", train, eps_d, seed, target=target, epochs=args.steps, lr=args.lr,
                                    optimizer=args.optimizer, device=cfg.device)
                row = {**base, "eps_d": eps_d, "gc_seconds": time.time() - start, **poison.provenance["objective"],
                       "mean_abs_dx": (poison.x - train.x[poison.indices]).abs().mean().item()}
                row["gc_drop"] = retrain_and_evaluate(poison, FP, "fp", cfg, seed, train, test)["drop"]
                if not args.no_flip:
                    flip = run_attack("label_flip", train, eps_d, seed)
                    row["flip_drop"] = retrain_and_evaluate(flip, FP, "fp", cfg, seed, train, test)["drop"]
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
