"""Prove the ``paper`` code path on this machine's device and measure the unit costs of the cost model.

    PYTHONPATH=. python3 bench/gpu_check.py            # on a GPU: ResNet-18 at width 1 (231 s on an H200)
    PYTHONPATH=. python3 bench/gpu_check.py --tiny     # the same code paths on a CPU, width 1/8 (57 s on 2 cores)

Plain Python with torch, pandas, pyyaml, filelock, safetensors and tqdm: no papermill, Jupyter or network. It writes
CIFAR-format files of its own (class-coloured noise) into a scratch folder and keeps its cache there.

Part 1 computes every notebook's cells (``qlib.experiments``) at the ``paper`` architecture with tiny sizes, first on an
empty cache, counting the work done (``qlib.counters``) and checking it against the cost model's plan (``qlib.cost``),
then again on the warm cache, which must train and attack nothing. Every model the cache returns must be on the device
(``qlib.devices``).

Part 2 measures, on the device: training images/s of FP and of every QAT scheme the ``paper`` plan trains; evaluation
images/s; seconds per unit of GradPC, GC, GC-Q, TGDA, TGDA-Q, gradient matching (oblivious and aware) and each
unlearnable example, with the peak memory of each, at the ``paper`` preset's batch and chunk sizes; the GC objective
with TF32 on and off; whether ``deterministic`` training repeats bit for bit; and training throughput with 1, 2 and 4
processes sharing the device. Results go to ``bench/results/unit_costs_<device>.json`` (``--out``), written after
every measurement, so a run cut short keeps what it measured; a part that fails is recorded and the run goes on,
exiting non-zero at the end.
"""

import argparse
import importlib.util
import inspect
import json
import multiprocessing as mp
import os
import pickle
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA starts: the deterministic check needs it
THREADS = 4  # torch threads per cell of the paper runs (qlib grid --threads 4 --gpus-per-cell 1)
SCRATCH = Path(tempfile.mkdtemp(prefix="qlib-gpu-check-"))
os.environ["QLIB_DATA"] = str(SCRATCH / "data")
os.environ["QLIB_SYSTEM_DATA"] = str(SCRATCH / "system")
os.environ["QLIB_CACHE"] = str(SCRATCH / "cache")

from qlib import cells, cost, devices, numerics, paper  # noqa: E402  (after the folders are set)
from qlib.artifacts import atomic_write  # noqa: E402
from qlib.attacks import ATTACKS  # noqa: E402
from qlib.attacks.gc import cancel_objective, clean_gradient, gradient_parameters  # noqa: E402
from qlib.attacks.gradpc import gradpc  # noqa: E402
from qlib.attacks.unlearnable import UNLEARNABLE  # noqa: E402
from qlib.counters import counting  # noqa: E402
from qlib.data import Dataset  # noqa: E402
from qlib.executors import compute  # noqa: E402
from qlib.experiments import NOTEBOOKS, ablation, compute_stages, formats, ptq, targeted, unlearnable  # noqa: E402
from qlib.models import create_model  # noqa: E402
from qlib.presets import load_preset  # noqa: E402
from qlib.quant import parse_scheme, prepare_qat  # noqa: E402
from qlib.train import evaluate, fit  # noqa: E402

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
STARTED = time.perf_counter()


def say(text: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.1f} s] {text}", flush=True)


# -- data -------------------------------------------------------------------------------------------------------


def coloured_noise(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 3×32×32 uint8 images, each its class's colour plus noise (learnable), and their labels (balanced)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    colours = np.random.default_rng(0).integers(40, 216, (10, 3, 1, 1))
    images = colours[labels] + rng.normal(0, 40, (n, 3, 32, 32))
    return images.clip(0, 255).astype(np.uint8), labels


def write_cifar(folder: Path, per_batch: int, test: int) -> None:
    """torchvision's cifar-10-batches-py layout: five training batches and a test batch of coloured noise."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, n) in enumerate([(f"data_batch_{b}", per_batch) for b in range(1, 6)] + [("test_batch", test)]):
        images, labels = coloured_noise(n, seed=i)
        batch = {"batch_label": name, "labels": labels.tolist(), "data": images.reshape(n, -1), "filenames": [b"x"] * n}
        (folder / name).write_bytes(pickle.dumps(batch))


def tensors(n: int, seed: int = 0) -> Dataset:
    """A CIFAR-shaped in-memory set of ``n`` images for the timings."""
    images, labels = coloured_noise(n, seed)
    return Dataset(
        "cifar10",
        torch.from_numpy(images).float().div_(255),
        torch.from_numpy(labels).long(),
        10,
        CIFAR_MEAN,
        CIFAR_STD,
    )


# -- part 1: every notebook's code path ---------------------------------------------------------------------------


def check_preset(width: float, device: str) -> object:
    """The ``paper`` preset at tiny sizes: every grid of every notebook, one seed, one epoch, few attack steps; GC's
    chunk small enough that it takes its chunked path (TGDA's chunked path is part 2's, at the paper's chunk). Each
    cell runs with ``THREADS``, or fewer where this process has fewer (OMP_NUM_THREADS=1 under make test)."""
    smoke = load_preset("smoke")
    return load_preset(
        "paper",
        width=width,
        device=device,
        epochs=1,
        batch_size=25,
        seeds=[0],
        attacks={
            **{name: smoke.attacks[name] for name in UNLEARNABLE},
            "gc": {"epochs": 1, "chunk": 1},
            "tgda": {"epochs": 1, "follower_steps": 1, "cg_iters": 1, "batch_size": 20, "chunk": 2048},
            "gradient_matching": {"eps": 16 / 255, "steps": 2, "restarts": 2, "batch_size": 8, "augment": True},
            "sleeper_agent": {"steps": 2, "restarts": 1, "batch_size": 8, "sources": 20, "augment": True},
        },
        experiments={
            "targeted": {"targets": 1, "seeds": [0], "eps_d": 0.05, "epochs": 1},
            # the paper's 1% of Sleeper Agent buys no poison in --tiny's training set
            "backdoors": {"budgets": {"badnets": 0.1, "blend": 0.1, "sleeper_agent": 0.1}},
            "formats": {"seeds": [0]},
        },
    )


EARLY_STOPPING = {"attack/gc", "attack/gc_q"}

# Notebook 10's formats are torchao's: a machine without it (pip install -e '.[quant]') skips their cells and costs.
TORCHAO = importlib.util.find_spec("torchao") is not None
CHECKED = [n for n in NOTEBOOKS if TORCHAO or n != "10_modern_formats"]


def on_device(model, cfg) -> bool:
    want, got = devices.resolve(cfg.device), devices.of(model)
    return got.type == want.type and (got.index or 0) == (want.index or 0)


def part1(cfg, record: dict, full: dict[str, int]) -> None:
    own = {"sweep_eps_d": ptq.SWEEP_EPS_D}
    if full["train"] < 100:  # --tiny: notebook 01's smallest budget (1%) would buy no poison
        own["sweep_eps_d"] = [e for e in own["sweep_eps_d"] if e * full["train"] >= 1]
    planned = cost.plan(cfg, own, CHECKED)
    if not TORCHAO:
        record["part 1"]["10_modern_formats"] = "skipped: torchao is not installed (pip install -e '.[quant]')"
        say("part 1 10_modern_formats: skipped, torchao is not installed")
    grid = lambda notebook: compute_stages(
        [notebook],
        cfg,
        own,
        lambda cells, _: compute(cells, threads=min(THREADS, torch.get_num_threads()), progress=False),
    )
    for notebook in CHECKED:
        start = time.perf_counter()
        with counting() as ran:
            grid(notebook)
        # notebook 06 chooses its claims' regimes from results: the plan holds every regime it could choose; GC and
        # GC-Q stop early once their objective is below the threshold (qlib.attacks.gc.cancel_units: an upper bound)
        fewer = notebook == "06_attack_strength"
        plan = planned[notebook]
        exact = all(
            ran[u] == plan[u] or (ran[u] <= plan[u] and (fewer or u in EARLY_STOPPING)) for u in set(+ran) | set(plan)
        )
        record["part 1"][notebook] = {
            "empty cache seconds": round(time.perf_counter() - start, 2),
            "counts as planned": exact,
        }
        say(f"part 1 {notebook}: empty cache {time.perf_counter() - start:.1f} s, counts as planned: {exact}")
        if not exact:
            diff = {
                u: (ran[u], planned[notebook][u])
                for u in set(ran) | set(planned[notebook])
                if ran[u] != planned[notebook][u]
            }
            raise SystemExit(f"part 1: {notebook} ran other work than the cost model planned (ran, planned): {diff}")
    start = time.perf_counter()
    with counting() as ran:
        for notebook in CHECKED:
            grid(notebook)
    record["part 1"]["warm cache seconds"] = round(time.perf_counter() - start, 2)
    say(f"part 1 warm cache: all notebooks {time.perf_counter() - start:.1f} s, recomputed {+ran or 'nothing'}")
    if +ran:
        raise SystemExit(f"part 1: the warm cache recomputed {+ran}")
    loaded = {
        "clean FP": cells.trained(cfg, 0, paper.FP).value()[0],
        "QAT 1W1A bnn++": cells.trained(cfg, 0, parse_scheme("1W1A", "bnn++")).value()[0],
        "GradPC target": cells.target(cfg, 0).value()[0],
        "targeted surrogate": cells.trained(targeted.preset(cfg), 0, paper.FP, curve=False).value()[0],
    }
    misplaced = [name for name, model in loaded.items() if not on_device(model, cfg)]
    record["part 1"]["loaded on the device"] = not misplaced
    say(
        f"part 1: models loaded from the cache on {devices.resolve(cfg.device)}: "
        f"{'all' if not misplaced else misplaced}"
    )
    if misplaced:
        raise SystemExit(f"part 1: {misplaced} came back from the cache off the device {devices.resolve(cfg.device)}")


# -- part 2: unit costs -------------------------------------------------------------------------------------------


def synchronize(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def measured(dev: torch.device, work) -> tuple[float, Counter, int | None]:
    """(seconds, units counted, peak device memory in bytes or None on a CPU) of ``work()``."""
    synchronize(dev)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    start = time.perf_counter()
    with counting() as units:
        work()
    synchronize(dev)
    seconds = time.perf_counter() - start
    return seconds, units, torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None


def paper_schemes() -> dict:
    """Every scheme the ``paper`` plan trains, by name (notebook 10's formats where torchao is installed)."""
    schemes = [
        paper.FP,
        *paper.QAT_SCHEMES,
        *targeted.QAT_SCHEMES,
        *(s for _, s in unlearnable.SETTINGS),
        *ablation.LSQ_SCHEMES.values(),
        *(formats.schemes(load_preset("paper")) if TORCHAO else []),
    ]
    return {s.name: s for s in schemes}


def train_costs(record: dict, width: float, dev: torch.device, n: int, paper) -> None:
    """Seconds per training image (the second of two epochs, at the paper's batch and augmentation), per scheme."""
    data = tensors(n)
    for name, scheme in paper_schemes().items():
        model = create_model("resnet18", data, width, seed=0)
        model = model if scheme.is_fp else prepare_qat(model, scheme)
        history = []

        def train(model=model, history=history, name=name):
            history.extend(
                fit(
                    model,
                    data,
                    epochs=2,
                    lr=paper.lr,
                    batch_size=paper.batch_size,
                    augment=paper.augment,
                    device=str(dev),
                    progress=False,
                    counted_as=name,
                )
            )

        seconds, _, peak = measured(dev, train)
        add(record, f"train images/{name}", history[1]["seconds"] / n, peak, f"epoch 2 of 2 on {n} images")
    model = create_model("resnet18", data, width, seed=0).to(dev)
    evaluate(model, data)
    seconds, units, peak = measured(dev, lambda: evaluate(model, data))
    add(record, "eval images", seconds / units["eval images"], peak, f"{n} images, batch 256")


def add(record: dict, unit: str, seconds: float, peak: int | None, how: str) -> None:
    record["seconds"][unit] = seconds
    record["peak memory bytes"][unit] = peak
    record["how"][unit] = how
    memory = f", peak {peak / 2**30:.2f} GiB" if peak is not None else ""
    say(f"part 2 {unit}: {seconds * 1e3:.4g} ms per unit{memory} ({how})")
    save(record)


def attack_cost(
    record: dict,
    dev: torch.device,
    unit: str,
    name: str,
    clean: Dataset,
    eps_d: float,
    how: str,
    warmup: dict,
    **params,
) -> None:
    """Seconds per unit of attack ``name``: on a GPU a short warm-up run first (``warmup`` overrides; None: none, the
    device is warm by then), then the measured run."""

    def work():
        if dev.type == "cuda" and warmup is not None:
            ATTACKS.get(name)(clean, eps_d, 0, device=str(dev), **{**params, **warmup})
        seconds, units, peak = measured(dev, lambda: ATTACKS.get(name)(clean, eps_d, 0, device=str(dev), **params))
        add(record, unit, seconds / units[f"attack/{name}"], peak, how)

    guarded(record, unit, work)


def attack_costs(record: dict, width: float, dev: torch.device, tiny: bool, paper) -> None:
    n = 64 if tiny else 1024
    clean = tensors(n, seed=1)
    fp = create_model("resnet18", clean, width, seed=0).to(dev).eval()
    qaa = parse_scheme("1W1A", "bnn++")  # the heaviest backward B (SignSwish') of the paper's schemes
    gc_paper, tgda_paper = cells.settings(paper, "gc"), cells.settings(paper, "tgda")
    gc_k = min(gc_paper["chunk"], n // 2)
    gradpc_data = tensors((1 if tiny else 4) * paper.batch_size, seed=2)
    gradpc(fp, gradpc_data, batch_size=paper.batch_size)
    seconds, units, peak = measured(dev, lambda: gradpc(fp, gradpc_data, batch_size=paper.batch_size))
    add(
        record,
        "attack/gradpc",
        seconds / units["attack/gradpc"],
        peak,
        f"{len(gradpc_data)} images, batch {paper.batch_size}",
    )
    gc = dict(lr=gc_paper["lr"], chunk=gc_paper["chunk"], threshold=0.0)
    attack_cost(
        record,
        dev,
        "attack/gc",
        "gc",
        clean,
        gc_k / n,
        f"{gc_k} poisons, chunk {gc['chunk']}, 3 steps",
        {"epochs": 1},
        target=fp,
        epochs=3,
        **gc,
    )
    attack_cost(
        record,
        dev,
        "attack/gc_q",
        "gc_q",
        clean,
        gc_k / n,
        f"{gc_k} poisons, {qaa.name}, 3 steps",
        {"epochs": 1},
        target=fp,
        scheme=qaa,
        epochs=3,
        **gc,
    )
    chunk = 8 if tiny else tgda_paper["chunk"]
    tgda_k = 2 * chunk  # two pieces of poisons besides the batch's: the chunked path the paper's 1,500 poisons take
    tgda = dict(
        leader_lr=tgda_paper["leader_lr"],
        follower_steps=1 if tiny else tgda_paper["follower_steps"],
        cg_iters=1 if tiny else tgda_paper["cg_iters"],
        batch_size=16 if tiny else tgda_paper["batch_size"],
        chunk=chunk,
        epochs=1,
    )
    warm = {"cg_iters": 1, "follower_steps": 1}
    how = (
        f"{tgda_k} poisons + batch {tgda['batch_size']}, chunk {chunk}, cg {tgda['cg_iters']}, "
        f"{tgda['follower_steps']} follower steps, 1 leader step"
    )
    attack_cost(record, dev, "attack/tgda", "tgda", clean, tgda_k / n, how, warm, model=fp, **tgda)
    attack_cost(
        record,
        dev,
        "attack/tgda_q",
        "tgda_q",
        clean,
        tgda_k / n,
        f"{how}, {qaa.name}",
        warm,
        model=fp,
        scheme=qaa,
        **tgda,
    )
    gm_n = 100 if tiny else 10 * 500  # the paper's 500 poisons (1% of 50,000) of one class
    gm_clean = tensors(gm_n, seed=3)
    gm_k = gm_n // 10
    gm = dict(
        model=fp,
        target_image=clean.x[0],
        target_index=0,
        adversarial_class=3,
        steps=3,
        restarts=1,
        batch_size=cells.settings(paper, "gradient_matching").get("batch_size", 512),
    )
    attack_cost(
        record,
        dev,
        "attack/gradient_matching oblivious",
        "gradient_matching",
        gm_clean,
        gm_k / gm_n,
        f"{gm_k} poisons, batch {gm['batch_size']}, 3 steps",
        {"steps": 1},
        **gm,
    )
    attack_cost(
        record,
        dev,
        "attack/gradient_matching aware",
        "gradient_matching",
        gm_clean,
        gm_k / gm_n,
        f"{gm_k} poisons through 4W QAT, 3 steps",
        {"steps": 1},
        scheme=parse_scheme("4W"),
        **gm,
    )
    variants = [record["seconds"].get(f"attack/gradient_matching {v}") for v in ("oblivious", "aware")]
    if None not in variants:
        add(
            record,
            "attack/gradient_matching",
            max(variants),
            None,
            "the slower of oblivious and aware (priced by the cost model)",
        )
    attack_cost(
        record,
        dev,
        "attack/sleeper_agent",
        "sleeper_agent",
        gm_clean,
        gm_k / gm_n,
        f"{gm_k} poisons, {gm_k} triggered source images, batch {gm['batch_size']}, 3 steps",
        {"steps": 1},
        model=fp,
        target_class=3,
        source_class=4,
        sources=gm_k,
        steps=3,
        restarts=1,
        batch_size=gm["batch_size"],
    )
    for name in UNLEARNABLE:
        ue_cost(record, dev, name, width, tiny, paper)


def ue_short(name: str, n: int, tiny: bool) -> dict:
    """Each unlearnable example's ``paper`` settings, cut to a few steps over ``n`` images, the ratio of its inner
    loops kept (REM's surrogate steps scaled from one epoch of 50,000 images); with ``tiny``, to one or two of each."""
    short = {
        "em": {"max_rounds": 1, "stop_error": None},
        "tap": {"steps": 3, "restarts": 1},
        "dc": {"trials": 1, "steps": 3},
        "rem": {"max_rounds": 1, "train_steps": max(1, round(391 * n / 50000))},
        "ntga": {"steps": 2},
        "ar": {"min_response": 5.0, "max_candidates": 20000},
    }.get(name, {})
    if tiny:
        short |= {
            "em": {"pgd_steps": 2, "train_steps": 1},
            "rem": {"pgd_steps": 1, "adv_steps": 1},
            "tap": {"steps": 1},
            "dc": {"steps": 1, "ae_width": 8, "batch_size": 32},
            "ntga": {"steps": 1, "block_size": 64},
        }.get(name, {})
    return short


def ue_cost(record: dict, dev: torch.device, name: str, width: float, tiny: bool, paper) -> None:
    n = 32 if tiny else 1024
    params = {**cells.settings(paper, name), **ue_short(name, n, tiny)}
    clean, eps_d = tensors(n, seed=4), 1.0
    if name == "ntga":  # its validation set comes out of the clean set: keep the paper's, perturb n images
        params["val_size"] = 64 if tiny else 10000
        clean = tensors(n + params["val_size"], seed=4)
        eps_d = n / len(clean)
    if "model" in inspect.signature(ATTACKS.get(name)).parameters:
        params["model"] = create_model("resnet18", clean, width, seed=0).to(dev)
    attack_cost(
        record,
        dev,
        f"attack/{name}",
        name,
        clean,
        eps_d,
        f"{n} images, {ue_short(name, n, tiny) or 'paper settings'}",
        None,
        **params,
    )


def tf32_check(record: dict, width: float, dev: torch.device) -> None:
    """GC's objective ½‖∇ℓ(μ) + ∇ℓ(ν)‖² at a GradPC target, TF32 off and on, and the relative change of ∇ℓ(μ)."""
    clean = tensors(1024, seed=5)
    target = gradpc(create_model("resnet18", clean, width, seed=0).to(dev), clean, eps_w=0.5).eval()
    params = gradient_parameters(target, "all")
    x, y = clean.x[:512].to(dev).requires_grad_(True), clean.y[:512].to(dev)
    out = {}
    for setting in ("ieee", "tf32"):
        torch.backends.cudnn.conv.fp32_precision = torch.backends.cuda.matmul.fp32_precision = setting
        g = clean_gradient(target, params, clean)
        out[setting] = {
            "objective": cancel_objective(target, params, g, x, y, 512)[0],
            "clean gradient": torch.cat([t.flatten() for t in g]),
        }
    numerics.configure()
    gi, gt = out["ieee"]["clean gradient"], out["tf32"]["clean gradient"]
    record["tf32"] = {
        "objective, TF32 off": out["ieee"]["objective"],
        "objective, TF32 on": out["tf32"]["objective"],
        "relative change of the clean gradient": ((gt - gi).norm() / gi.norm()).item(),
    }
    say(f"part 2 TF32: {record['tf32']}")
    save(record)


def determinism_check(record: dict, width: float, dev: torch.device, paper) -> None:
    """Two trainings from one seed, with ``deterministic`` on and then off: are the weights identical?"""
    data = tensors(640, seed=6)
    for deterministic in (True, False):
        numerics.configure(deterministic)
        states = []
        for _ in range(2):
            model = create_model("resnet18", data, width, seed=0)
            fit(
                model,
                data,
                epochs=1,
                lr=paper.lr,
                batch_size=paper.batch_size,
                augment=True,
                device=str(dev),
                progress=False,
            )
            states.append(model.state_dict())
        same = all(torch.equal(states[0][k], states[1][k]) for k in states[0])
        record["deterministic"][str(deterministic)] = same
        say(f"part 2 deterministic={deterministic}: two trainings identical: {same}")
    numerics.configure()
    save(record)


def worker(args) -> float:
    """One process of the concurrency test: train an epoch (warm-up), wait for the others, train an epoch, return its
    seconds."""
    width, device, n, scheme_name, barrier = args
    numerics.configure()
    data = tensors(n)
    scheme = paper_schemes()[scheme_name]
    model = create_model("resnet18", data, width, seed=0)
    model = model if scheme.is_fp else prepare_qat(model, scheme)
    fit(model, data, epochs=1, lr=0.1, batch_size=128, augment=True, device=device, progress=False)
    barrier.wait()
    return fit(model, data, epochs=1, lr=0.1, batch_size=128, augment=True, device=device, progress=False)[0]["seconds"]


def concurrency(record: dict, width: float, dev: torch.device, n: int) -> None:
    """Training images/s of 1, 2 and 4 processes at once on the device (each its own model), FP and 4W QAT: one pool
    of 4 workers, k tasks at a time, each task held at a barrier of k so that k different workers run together."""
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(4) as pool:
        for scheme in ("fp", "4W"):
            for procs in (1, 2, 4):
                seconds = pool.map(worker, [(width, str(dev), n, scheme, manager.Barrier(procs))] * procs, chunksize=1)
                rate = procs * n / max(seconds)
                record["processes"][f"{scheme} x{procs}"] = rate
                say(f"part 2 {procs} process(es) training {scheme} at once: {rate:,.0f} images/s in all")
                save(record)


# -- output -------------------------------------------------------------------------------------------------------

OUT: list[Path] = []


def save(record: dict) -> None:
    record["seconds so far"] = round(time.perf_counter() - STARTED, 1)
    atomic_write(OUT[0], lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1) + "\n"))


def device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def guarded(record: dict, what: str, work, *args) -> None:
    """Run one part; a failure is recorded (and reported at the end) instead of ending the run, so that one call on a
    lent GPU measures everything it can."""
    try:
        work(*args)
    except (Exception, SystemExit) as e:  # noqa: BLE001  (every failure is reported, none is lost)
        record["errors"][what] = f"{type(e).__name__}: {e}"
        say(f"FAILED {what}: {type(e).__name__}: {e}")
        save(record)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="CPU, width 1/8, a handful of images (the test suite's run)"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu, cuda[:N]")
    parser.add_argument("--out", help="the JSON to write (default bench/results/unit_costs_<device>.json)")
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["part1", "attacks", "concurrency"], help="leave parts out"
    )
    args = parser.parse_args(argv)
    dev = devices.resolve("cpu" if args.tiny else args.device)
    width = 0.125 if args.tiny else 1.0
    slug = re.sub(r"[^a-z0-9]+", "_", device_name(dev).lower()).strip("_") + ("_tiny" if args.tiny else "")
    OUT.append(Path(args.out) if args.out else Path(__file__).parent / "results" / f"unit_costs_{slug}.json")
    OUT[0].parent.mkdir(parents=True, exist_ok=True)
    numerics.configure()
    record = {
        "device": device_name(dev),
        "torch": torch.__version__,
        "model": f"resnet18 width {width}",
        "images": "3x32x32 (CIFAR-10 shape)",
        "tiny": args.tiny,
        "command": " ".join(["bench/gpu_check.py", *sys.argv[1:]]),
        "errors": {},
        "part 1": {},
        "seconds": {},
        "peak memory bytes": {},
        "how": {},
        "tf32": {},
        "deterministic": {},
        "processes": {},
    }
    say(f"device {device_name(dev)}, torch {torch.__version__}, scratch {SCRATCH}, writing {OUT[0]}")
    paper = load_preset("paper")
    if "part1" not in args.skip:
        full = {"train": 5 * (10 if args.tiny else 40), "test": 20 if args.tiny else 100}
        write_cifar(SCRATCH / "data" / "cifar-10-batches-py", per_batch=full["train"] // 5, test=full["test"])
        guarded(record, "part 1", part1, check_preset(width, str(dev)), record, full)
    guarded(record, "training", train_costs, record, width, dev, 64 if args.tiny else 128 * 20, paper)
    if "attacks" not in args.skip:
        guarded(record, "attacks", attack_costs, record, width, dev, args.tiny, paper)
    if dev.type == "cuda":
        guarded(record, "tf32", tf32_check, record, width, dev)
        guarded(record, "deterministic", determinism_check, record, width, dev, paper)
        if "concurrency" not in args.skip:
            guarded(record, "processes", concurrency, record, width, dev, 128 * 20)
    say(f"done: {OUT[0]}")
    if record["errors"]:
        sys.exit(f"gpu_check: {len(record['errors'])} part(s) failed: {', '.join(record['errors'])}")


if __name__ == "__main__":
    main()
