"""Training-step time of QAT against full precision on the same model and batch, on CPU, as a ratio.

A step is forward, sum-free cross-entropy, backward and an SGD update. Steps of the schemes alternate so
machine noise hits all alike; the median over repeats is reported.

    .venv/bin/python bench/qat_step.py [--model cnn] [--batch-size 128] [--steps 20] [--repeats 5]
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as nnf

from qlib.data import load
from qlib.models import create_model
from qlib.quant import parse_scheme, prepare_qat

SCHEMES = [
    ("fp", None),
    ("8W8A", None),
    ("8W", None),
    ("4W4A", None),
    ("1W", "bnn"),
    ("1W1A", "bnn"),
    ("1W1A", "bnn++"),
]


def timed_steps(model, x, y, steps):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    start = time.perf_counter()
    for _ in range(steps):
        loss = nnf.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    data = load("fashion-mnist", "train").subset(args.batch_size, seed=0)
    x, y = data.x.contiguous(memory_format=torch.channels_last), data.y
    base = create_model(args.model, data, seed=0).to(memory_format=torch.channels_last)
    models = {parse_scheme(t, m).name: prepare_qat(base, parse_scheme(t, m)) for t, m in SCHEMES}
    for model in models.values():  # warm-up, and activation scales seen once
        timed_steps(model, x, y, 2)
    seconds = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            seconds[name].append(timed_steps(model, x, y, args.steps))
    fp = statistics.median(seconds["fp"])
    print(
        f"{args.model}, batch {args.batch_size}, channels_last, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, median of {args.repeats}×{args.steps} steps"
    )
    for name, s in seconds.items():
        print(f"  {name:12s} {1000 * statistics.median(s):7.1f} ms/step   ratio to FP {statistics.median(s) / fp:.2f}")


if __name__ == "__main__":
    main()
