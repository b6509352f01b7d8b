"""Probe: does GC (or label flip) move the retrained FP accuracy on a preset, and what does it depend on?

For one seed: the cached clean FP model, a GradPC target of squared budget ε_w, GC poisons at ε_d, then
retraining on μ+ν in full precision (the preset's epochs). Prints the target's accuracy, GC's objective
(initial → final), wall times, and the accuracy drop of GC and of label flip at the same ε_d.

    .venv/bin/python bench/gc_probe.py --eps-w 0.01 --eps-d 0.03 --epochs 200 [--lr 0.01] [--optimizer adam]
"""

import argparse
import time

from qlib.attacks import run_attack
from qlib.attacks.gradpc import gradpc
from qlib.presets import load_preset
from qlib.study import FP, load_data, retrain_and_evaluate, trained_model
from qlib.train import evaluate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eps-w", type=float, default=0.01)
    parser.add_argument("--eps-d", type=float, default=0.03)
    parser.add_argument("--epochs", type=int, default=200, help="GC steps")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--retrain-epochs", type=int, help="override the preset's (re)training epochs")
    args = parser.parse_args()

    cfg = load_preset(args.preset, epochs=args.retrain_epochs)
    train, test = load_data(cfg)
    clean, _ = trained_model(cfg, args.seed, FP, train, test)
    start = time.time()
    target = gradpc(clean, train, eps_w=args.eps_w, batch_size=cfg.batch_size, seed=args.seed)
    print(f"clean {evaluate(clean, test):.4f}  GradPC target (eps_w {args.eps_w}) {evaluate(target, test):.4f}  "
          f"[{time.time() - start:.0f} s]", flush=True)
    start = time.time()
    poison = run_attack("gc", train, args.eps_d, args.seed, target=target, epochs=args.epochs, lr=args.lr,
                        optimizer=args.optimizer, device=cfg.device, progress=True)
    o = poison.provenance["objective"]
    print(f"GC eps_d {args.eps_d}: objective {o['initial']:.4g} -> {o['final']:.4g} in {o['steps']} steps "
          f"[{time.time() - start:.0f} s]; mean |x - x0| {(poison.x - train.x[poison.indices]).abs().mean():.4f}", flush=True)
    for name, nu in (("gc", poison), ("label_flip", run_attack("label_flip", train, args.eps_d, args.seed))):
        start = time.time()
        r = retrain_and_evaluate(nu, FP, "fp", cfg, args.seed, train, test)
        print(f"{name:10s} retrained FP ({cfg.epochs} epochs): {r['acc']:.4f}, drop {100 * r['drop']:+.2f} points "
              f"[{time.time() - start:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
