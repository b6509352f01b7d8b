"""Images per second of ``qlib.train.fit`` against a plain hand-written PyTorch loop, in one run.

Same model (same initial weights), same data and batch size, CPU. Runs alternate (plain, fit, plain, …)
so that machine noise hits both alike; the ratio of medians is reported. ``fit`` is run both with its
defaults (``fast=True``: channels_last) and with ``fast=False`` (the plain loop's memory layout).

    .venv/bin/python bench/train_throughput.py [--n 10000] [--batch-size 128] [--repeats 3]
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as nnf

from qlib.data import load
from qlib.models import create_model
from qlib.train import fit


def plain_loop(model, x, y, batch_size, lr):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    model.train()
    perm = torch.randperm(len(y))
    for i in range(0, len(y), batch_size):
        idx = perm[i : i + batch_size]
        loss = nnf.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    train = load("fashion-mnist", "train").subset(args.n, seed=0)
    runs = {
        "plain loop": lambda m: plain_loop(m, train.x, train.y, args.batch_size, 0.05),
        "fit (fast=True)": lambda m: fit(
            m, train, epochs=1, lr=0.05, batch_size=args.batch_size, device="cpu", progress=False
        ),
        "fit (fast=False)": lambda m: fit(
            m, train, epochs=1, lr=0.05, batch_size=args.batch_size, device="cpu", fast=False, progress=False
        ),
    }
    seconds = {name: [] for name in runs}
    for run in runs.values():  # warm-up
        run(create_model(args.model, train, seed=0))
    for _ in range(args.repeats):
        for name, run in runs.items():
            model = create_model(args.model, train, seed=0)
            start = time.perf_counter()
            run(model)
            seconds[name].append(time.perf_counter() - start)
    print(
        f"{args.model}, {args.n} Fashion-MNIST images, batch {args.batch_size}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, median of {args.repeats}"
    )
    base = args.n / statistics.median(seconds["plain loop"])
    for name, s in seconds.items():
        ips = args.n / statistics.median(s)
        print(f"  {name:18s} {ips:8.0f} img/s   ratio to plain loop {ips / base:.2f}")


if __name__ == "__main__":
    main()
