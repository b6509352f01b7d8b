"""``python -m qlib``: compute the cells of notebooks (``grid``), run a notebook into reports/ (``run``), evaluate a
poison file against the quantization grid (``evaluate``), decide the primary comparisons again under another kernel
family (``replicate``), train the clean baselines of a preset, fetch data, or count
what a preset costs."""

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
import yaml

from . import cost, data, executors, pipeline, scoreboard
from .artifacts import ArtifactError, atomic_write, write_json
from .data import DataNotFoundError
from .experiments import NOTEBOOKS, clean, compute_stages, evaluate, experiment, verdicts
from .params import OWN, check_own
from .poison import describe
from .presets import FIELDS, load_preset
from .registry import ParameterError, unknown_name
from .report import execute, report_dir, write_index
from .stats import fmt_pct, mean_std


def _train(args) -> None:
    cfg = load_preset(args.preset, epochs=args.epochs, seeds=args.seeds)
    started = time.time()
    schemes, _ = clean.run(cfg)
    finals = schemes[schemes.regime == "FP"][["seed", "test_acc", "train_seconds"]]
    print(finals.to_string(index=False))
    s = mean_std(finals, "test_acc").iloc[0]
    print(
        f"clean FP test accuracy ({cfg.dataset}, {cfg.model}): {fmt_pct(s['mean'], s['std'])} "
        f"over {int(s['n'])} seed(s), {time.time() - started:.0f} s"
    )


def _data(args) -> None:
    for split in ("train", "test"):
        d = data.load(args.dataset, split)
        print(f"{args.dataset} {split}: {tuple(d.x.shape)} images, {d.num_classes} classes")


def _cost(args) -> None:
    cfg = load_preset(args.preset)
    record = cost.read_unit_costs(Path(args.unit_costs)) if args.unit_costs else None
    if args.processes and not record:
        raise ParameterError("--processes needs --unit-costs: the gain comes from a bench/gpu_check.py measurement")
    seconds = cost.with_processes(record, args.processes) if args.processes else record["seconds"] if record else None
    table = cost.table(cfg, seconds)
    print(f"preset {cfg.preset}: work on an empty cache, notebooks in order (each entry once, where first needed)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if record:
        trainings = f", {args.processes} trainings at once per device" if args.processes else ", one thing at a time"
        print(
            f"unit costs: {args.unit_costs} ({record['device']}, torch {record['torch']}, {record['model']}{trainings})"
        )
        print(cost.summary(table).to_string(index=False, float_format=lambda v: f"{v:.1f}"))


def _parameter_file(path: str) -> dict:
    """The parameters in a papermill-style YAML file (``-f``): a mapping of names to values."""
    try:
        values = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ParameterError(f"parameter file {path!r} cannot be read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ParameterError(f"parameter file {path!r} is not YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ParameterError(
            f"parameter file {path!r} holds {type(values).__name__}; allowed: a YAML mapping of "
            "parameter names to values"
        )
    return values


def _overrides(args) -> dict:
    """The values of ``-f FILE`` (in order) and ``-p NAME VALUE`` (which win), read as YAML."""
    overrides = {}
    for path in args.file:
        overrides |= _parameter_file(path)
    for name, text in args.param:
        try:
            overrides[name] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ParameterError(
                f"parameter {name}: value {text!r} is not YAML; allowed: a YAML scalar, list or "
                "mapping such as 3, 0.1, true, [0, 1] or {eps: 0.1}"
            ) from None
    return overrides


def _execution(args) -> dict:
    """How the cells run (``executors.compute``'s keywords): the command line's, else the environment's."""
    return {
        "threads": executors.threads_per_cell(args.threads),
        "workers": args.workers,
        "address": args.address,
        "gpus": executors.gpus_per_cell(args.gpus_per_cell),
    }


def _grid(args) -> None:
    overrides = _overrides(args)
    for name in overrides:
        if name not in FIELDS and name not in OWN:
            raise unknown_name("parameter", name, [*FIELDS, *OWN])
    own = {k: v for k, v in overrides.items() if k in OWN}
    for name, value in own.items():
        check_own(name, value)
    cfg = load_preset(args.preset, **{k: v for k, v in overrides.items() if k in FIELDS})
    execution = _execution(args)
    notebooks = list(NOTEBOOKS) if args.notebooks == ["all"] else args.notebooks
    for notebook in notebooks:
        experiment(notebook)  # an unknown name is refused before anything runs
    started = time.time()
    # notebook 08 is decided after the others: pilot, then each look's open comparisons (verdicts.decide)
    staged = [n for n in notebooks if experiment(n) is verdicts]
    result = {"cells": 0, "runs": {}}

    def run(cells, stage):
        done = executors.compute(cells, args.executor, desc=f"grid ({args.executor}): {stage}", **execution)
        result["cells"] += done["cells"]
        result["runs"] |= done["runs"]

    cells = compute_stages([n for n in notebooks if n not in staged], cfg, own, run)
    total = len(pipeline.graph(cells))
    for _ in staged:
        decided = verdicts.decide(cfg, args.executor, **execution)
        result["runs"] |= decided["runs"]
        result["cells"] += decided["cells"]
        total += decided["cells"]
    wall = time.time() - started
    computed = sum(r["computed"] for r in result["runs"].values())
    print(
        f"{computed} of {total} cells computed here ({total - result['cells']} were in the cache, "
        f"{result['cells'] - computed} computed meanwhile by another process) in {wall:.0f} s "
        f"with executor {args.executor}; render with: python -m qlib run NOTEBOOK --preset {cfg.preset}"
    )
    if args.timings:
        by_id = {c.id: c for c in pipeline.graph(cells + [c for _ in staged for c in verdicts.cells(cfg)])}
        record = {
            "preset": cfg.preset,
            "executor": args.executor,
            "workers": args.workers,
            "threads": execution["threads"],
            "notebooks": notebooks,
            "wall_seconds": wall,
            "cells": [
                {"id": cid, "kind": by_id[cid].kind, "label": by_id[cid].label, **r}
                for cid, r in result["runs"].items()
            ],
        }
        write_json(Path(args.timings), record)


def _evaluate(args) -> None:
    train_size = {None: None, "all": "all"}.get(args.train_size, args.train_size)
    if train_size not in (None, "all"):
        try:
            train_size = int(train_size)
        except ValueError:
            raise ParameterError(
                f"--train-size {args.train_size!r}: allowed is a positive integer or 'all' (the full training split)"
            ) from None
    cfg = load_preset(args.preset, seeds=args.seeds)
    if train_size is not None:
        cfg = replace(cfg, train_size=None if train_size == "all" else train_size)
    out = Path(args.out or f"{Path(args.poison).name.removesuffix('.npz')}.{cfg.preset}.evaluation.csv")
    if out.suffix != ".csv":
        raise ParameterError(f"--out {str(out)!r}: allowed is a file name ending in .csv")
    started = time.time()
    try:
        cells = evaluate.cells(cfg, args.poison, args.schemes, args.regimes, args.pixels)
    except ValueError as e:  # a bad poison file (qlib.poison.PoisonFileError) or a bad scheme
        raise ParameterError(str(e)) from None
    executors.compute(cells, args.executor, desc=f"evaluate ({args.executor})", **_execution(args))
    result = evaluate.run(cfg, args.poison, args.schemes, args.regimes, args.pixels, progress=False)
    print(f"read {describe(result['poison'])}")
    print(
        f"trained on {cfg.dataset} ({cfg.model}, {cfg.train_size or 'all'} training images, {cfg.epochs} epochs), "
        f"seeds {', '.join(map(str, cfg.seeds))}; drop = poisoned − clean accuracy of the same scheme, seed and regime"
    )
    with pd_options():
        print(evaluate.table(result).to_string())
        for extra in (evaluate.survival(result), evaluate.rates(result), evaluate.backdoor_table(result)):
            if extra is not None:
                print(extra.to_string())
    atomic_write(out, lambda tmp: result["runs"].to_csv(tmp, index=False))
    print(f"wrote {out} ({len(result['runs'])} rows) in {time.time() - started:.0f} s")


def pd_options():
    return pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 80)


def _run(args) -> None:
    from papermill.exceptions import PapermillExecutionError  # optional: a GPU machine may run qlib without papermill

    overrides = _overrides(args)
    out_dir = Path(args.out) if args.out else report_dir(args.preset)
    notebook = Path(args.notebook)
    try:
        html = execute(notebook, args.preset, out_dir, overrides)
    except PapermillExecutionError as e:
        kept = out_dir / "failed" / notebook.name
        sys.exit(
            f"qlib: {notebook.name} failed in cell {e.cell_index}: {e.ename}: {e.evalue}; the last good report "
            f"is untouched, this run's executed notebook is {kept}"
        )
    print(f"wrote {html} and {write_index(out_dir)}")


def _replicate(args) -> None:
    """Decide the primary comparisons in this process's kernel family (``make replicate`` sets it, and a cache of its
    own) and write their verdicts, with the kernel family, to ``--out``; then rewrite the report folder's index."""
    cfg = load_preset(args.preset)
    if cfg.design is None:
        raise ParameterError(
            f"preset {args.preset!r} declares no primary comparisons (field primary): nothing to replicate"
        )
    started = time.time()
    result = verdicts.decide(
        cfg, args.executor, pilot=False, **_execution(args)
    )  # the pilot sizes the design, never decides
    out = Path(args.out) if args.out else report_dir(args.preset) / scoreboard.REPLICATION
    kernels = {
        "cpu capability": torch.backends.cpu.get_cpu_capability(),
        **{k: os.environ.get(k) for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")},
    }
    write_json(
        out,
        {
            "preset": cfg.preset,
            "kernels": kernels,
            "wall_seconds": round(time.time() - started, 1),
            "primary": verdicts.records(result["verdicts"]),
        },
    )
    with pd_options():
        print(result["verdicts"].to_string(index=False))
    print(
        f"wrote {out} in {time.time() - started:.0f} s under {kernels}"
        + (f"; index {write_index(out.parent)}" if any(out.parent.glob("*.ipynb")) else "")
    )


def _execution_arguments(p) -> None:
    """How the cells run, which is no part of a preset (``qlib.executors``)."""
    p.add_argument("--workers", type=int, metavar="N", help="local: worker processes (default: cores / threads)")
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch threads per cell, which every executor pins (default: $QLIB_THREADS, else 1; the count changes "
        "trained weights bit for bit)",
    )
    p.add_argument("--address", metavar="ADDR", help="ray: the cluster to join (default: $QLIB_RAY_ADDRESS)")
    p.add_argument(
        "--gpus-per-cell",
        type=float,
        metavar="G",
        help="ray: GPUs each cell declares (default: $QLIB_GPUS_PER_CELL, else 0; a fraction packs cells)",
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="qlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train the clean full-precision model of a preset, once per seed")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--epochs", type=int, help="override the preset's epochs")
    p.add_argument("--seeds", type=int, nargs="+", help="override the preset's seeds")
    p.set_defaults(func=_train)

    p = sub.add_parser("data", help="make sure a dataset is available (project folder, system folder, download)")
    p.add_argument("dataset", nargs="?", default="fashion-mnist")
    p.set_defaults(func=_data)

    p = sub.add_parser(
        "grid", help="compute every cell the named notebooks need, with one progress bar, before rendering"
    )
    p.add_argument(
        "notebooks",
        nargs="+",
        metavar="NOTEBOOK",
        help="notebook names or paths (00_clean_baselines, notebooks/01_ptq.ipynb, …) or 'all'",
    )
    p.add_argument("--preset", default="cpu")
    p.add_argument(
        "--executor",
        default="serial",
        choices=["serial", "local", "ray"],
        help="serial: in this process; local: a pool of worker processes; ray: a Ray cluster (--address or "
        "$QLIB_RAY_ADDRESS; none: a Ray runtime on this machine)",
    )
    _execution_arguments(p)
    p.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="override a preset field or a notebook's own parameter (VALUE is read as YAML)",
    )
    p.add_argument(
        "-f", "--file", action="append", default=[], metavar="FILE", help="overrides from a YAML file; -p wins"
    )
    p.add_argument(
        "--timings",
        metavar="FILE",
        help="write each pending cell's kind, label, seconds and whether this run computed it, as JSON",
    )
    p.set_defaults(func=_grid)

    p = sub.add_parser("evaluate", help="retrain on a poison file under each scheme and regime and report the drops")
    p.add_argument(
        "poison",
        help="a .npz (x, y[, indices, mode, bounds, target_index, adversarial_class]), a folder of "
        'PNG files with labels.csv, or a qlib PoisonSet (README "Evaluate your own poison")',
    )
    p.add_argument("--preset", default="cpu")
    p.add_argument(
        "--schemes",
        nargs="+",
        default=["fp", "1W", "4W", "8W"],
        metavar="SCHEME",
        help="TASK or TASK:METHOD, e.g. fp 1W 4W 8W 4W4A 1W1A:adabin 4W:lsq (default: fp 1W 4W 8W)",
    )
    p.add_argument("--regimes", nargs="+", default=["fp", "ptq", "qat"], choices=["fp", "ptq", "qat"])
    p.add_argument("--seeds", type=int, nargs="+", help="override the preset's seeds")
    p.add_argument("--train-size", metavar="N|all", help="override the preset's training subset; 'all': the full split")
    p.add_argument(
        "--pixels",
        default="float",
        choices=["float", "uint8"],
        help="uint8: also evaluate the poison rounded to 8-bit images, and report whether it survives",
    )
    p.add_argument("--out", metavar="FILE.csv", help="the tidy rows (default: <poison>.<preset>.evaluation.csv)")
    p.add_argument("--executor", default="serial", choices=["serial", "local", "ray"])
    _execution_arguments(p)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("run", help="execute a notebook with papermill and render it to reports/<preset>/")
    p.add_argument("notebook")
    p.add_argument("--preset", default="cpu")
    p.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="override one parameter (VALUE is read as YAML)",
    )
    p.add_argument(
        "-f",
        "--file",
        action="append",
        default=[],
        metavar="FILE",
        help="override parameters from a YAML file of NAME: VALUE (as papermill -f); -p wins",
    )
    p.add_argument("--out", help="output folder (default reports/<preset>)")
    p.set_defaults(func=_run)

    p = sub.add_parser(
        "replicate",
        help="decide the primary comparisons in this kernel family (their deciding seeds and "
        "trials; not the pilot, which only sizes the design) and write their verdicts beside the reports "
        "(make replicate sets a second kernel family and cache)",
    )
    p.add_argument("--preset", default="cpu")
    p.add_argument("--executor", default="serial", choices=["serial", "local", "ray"])
    _execution_arguments(p)
    p.add_argument("--out", metavar="FILE.json", help="default: reports/<preset>/replication.json")
    p.set_defaults(func=_replicate)

    p = sub.add_parser("cost", help="count a preset's units of work per notebook and, with unit costs, its hours")
    p.add_argument("--preset", default="paper")
    p.add_argument("--unit-costs", metavar="FILE", help="a bench/gpu_check.py result (bench/results/unit_costs_*.json)")
    p.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="price trainings as N processes per device, by the throughput gain the unit costs measured",
    )
    p.set_defaults(func=_cost)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ParameterError, DataNotFoundError) as e:  # bad input: refused, as argparse refuses, with status 2
        print(f"qlib: error: {e}", file=sys.stderr)
        sys.exit(2)
    except ArtifactError as e:
        sys.exit(f"qlib: error: {e}")
