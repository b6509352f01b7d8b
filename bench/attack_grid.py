"""Run an attack grid (``qlib.experiments.attack_grid``) on a preset and print the per-seed rows and the mean ± std per
cell.

    .venv/bin/python bench/attack_grid.py --attacks label_flip tgda gc --eps-d 0.03 0.1 --cells fp \
        [--cells fp ptq:4W qat:1W1A:bnn] [--preset cpu] [-o key=value ...] [--csv out.csv]

A cell is ``fp``, or ``REGIME:TASK[:METHOD]`` with REGIME ptq or qat. ``-o`` overrides preset fields (YAML values).
"""

import argparse
import time

import pandas as pd
import yaml

from qlib.executors import compute
from qlib.experiments import attack_grid, grid_cells
from qlib.paper import FP
from qlib.presets import load_preset
from qlib.quant import parse_scheme
from qlib.stats import mean_std


def cell(text: str):
    if text == "fp":
        return "fp", FP
    regime, task, *method = text.split(":")
    return regime, parse_scheme(task, *method)


def main():
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--attacks", nargs="+", required=True)
    parser.add_argument("--eps-d", type=float, nargs="+", required=True)
    parser.add_argument("--cells", nargs="+", default=["fp"])
    parser.add_argument("-o", "--override", action="append", default=[], help="preset field=value")
    parser.add_argument("--csv")
    args = parser.parse_args()
    overrides = dict(o.split("=", 1) for o in args.override)
    cfg = load_preset(args.preset, **{k: yaml.safe_load(v) for k, v in overrides.items()})
    start = time.time()
    entries = attack_grid.entries(cfg, args.attacks, args.eps_d, [cell(c) for c in args.cells])
    compute(grid_cells(entries))
    df = attack_grid.rows(entries)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    print(df.drop(columns=["method"]).to_string(float_format=lambda v: f"{v:.4g}"))
    summary = mean_std(df, "drop", ["attack", "eps_d", "regime", "scheme"])
    summary["attack_seconds"] = (
        df.groupby(["attack", "eps_d", "regime", "scheme"], sort=False)["attack_seconds"].mean().values
    )
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"wall time {time.time() - start:.0f} s")
    if args.csv:
        df.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
