"""Executors: what computes the pending cells (``qlib.pipeline.pending``) in dependency order, and :func:`compute`,
which has the named one compute them.

- ``serial``: one after the other, in this process.
- ``local``: a pool of ``workers`` processes on this machine (``concurrent.futures``); a cell is submitted once all
  its inputs are in the cache. A worker that dies takes the pool with it: the pool is started again and only the
  cells whose entries are still missing are submitted again (at most ``RESTARTS`` times).
- ``ray``: tasks on a Ray cluster (imported only here), ``ray.init(address=…)``; each cell is submitted once, with
  its inputs' tasks as arguments so that Ray starts it after them, and declares ``threads`` CPUs and ``gpus`` GPUs.
  Ray runs a task again when its worker dies.

Every executor runs each cell with the same ``threads`` (``pipeline.run``), so a cell's result does not depend on
the executor. Each returns {cell id: ``pipeline.run``'s record of the cell in its worker}.

How a run executes is not part of a preset: the threads per cell, the Ray cluster and the GPUs per cell come from
the command line (``qlib grid --threads N --address A --gpus-per-cell G``) or the environment (``QLIB_THREADS``,
``QLIB_RAY_ADDRESS``, ``QLIB_GPUS_PER_CELL``); :func:`threads_per_cell` and :func:`gpus_per_cell` read them.
"""

import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from tqdm import tqdm

from .cache import cache_root
from .pipeline import Cell, pending, run
from .registry import ParameterError, Registry

EXECUTORS = Registry("executor")
RESTARTS = 3  # times the local pool is started again after a worker died
SHARED_ENV = ("QLIB_CACHE", "QLIB_DATA", "QLIB_SYSTEM_DATA")  # what a Ray worker takes from the driver


def _from_env(value, name: str, kind, default, rule, allowed: str):
    if value is None:
        text = os.environ.get(name)
        try:
            value = default if text in (None, "") else kind(text)
        except ValueError:
            raise ParameterError(f"${name}={text!r}: allowed is {allowed}") from None
    if not rule(value):
        raise ParameterError(f"{name.removeprefix('QLIB_').lower()}={value!r}: allowed is {allowed}")
    return value


def threads_per_cell(value: int | None = None) -> int:
    """Torch intra-op threads per cell: ``value``, else ``$QLIB_THREADS``, else 1. Every executor pins them: the thread
    count changes trained weights bit for bit, so every cell of a study should run with the same count."""
    return _from_env(value, "QLIB_THREADS", int, 1, lambda v: v >= 1, "a positive integer")


def gpus_per_cell(value: float | None = None) -> float:
    """GPUs each cell declares to Ray: ``value``, else ``$QLIB_GPUS_PER_CELL``, else 0 (a fraction packs cells)."""
    return _from_env(value, "QLIB_GPUS_PER_CELL", float, 0.0, lambda v: 0 <= v < float("inf"), "a finite number ≥ 0")


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@EXECUTORS.register("serial")
def serial(todo: list[Cell], *, threads: int, bar, **_) -> dict:
    runs = {}
    for cell in todo:
        bar.set_postfix_str(cell.label or cell.id, refresh=False)
        runs[cell.id] = run(cell, threads)
        bar.update()
    return runs


@EXECUTORS.register("local")
def local(todo: list[Cell], *, threads: int, workers: int | None, bar, **_) -> dict:
    workers = workers or max(1, available_cores() // threads)
    runs, restarts = {}, 0
    while todo:
        try:
            _schedule(todo, threads, _pool(workers), runs, bar)
            return runs
        except BrokenProcessPool:
            _discard_pool()
            restarts += 1
            if restarts > RESTARTS:
                raise
            todo = [c for c in todo if not c.done()]
            bar.write(f"qlib: a worker died; starting the pool again for the {len(todo)} cells not in the cache")
    return runs


# The local pool, kept between calls of one process (a run of notebook 08 computes in a dozen steps, and a spawned
# worker takes seconds to import torch): one pool per worker count and environment its workers were started in,
# since a worker reads the cache and data folders and the kernel family from the environment it was spawned with.
POOL_ENV = (*SHARED_ENV, "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS")
_POOL: dict = {}


def _pool(workers: int) -> ProcessPoolExecutor:
    key = (workers, tuple(os.environ.get(name) for name in POOL_ENV))
    if _POOL.get("key") != key:
        _discard_pool()
        _POOL.update(key=key, pool=ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")))
    return _POOL["pool"]


def _discard_pool() -> None:
    if pool := _POOL.pop("pool", None):
        pool.shutdown(wait=False, cancel_futures=True)
    _POOL.clear()


def _schedule(todo: list[Cell], threads: int, pool: ProcessPoolExecutor, runs: dict, bar) -> None:
    """Run ``todo`` on ``pool``, each cell once its pending inputs have finished."""
    waiting = {c.id: {i.id for i in c.inputs} & {t.id for t in todo} for c in todo}
    by_id = {c.id: c for c in todo}
    running = {}

    def submit_ready():
        for cid in [cid for cid, deps in waiting.items() if not deps]:
            del waiting[cid]
            running[pool.submit(run, by_id[cid], threads)] = cid

    submit_ready()
    while running:
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            cid = running.pop(future)
            runs[cid] = future.result()  # a cell's error ends the run here, as it would serially
            bar.update()
            for deps in waiting.values():
                deps.discard(cid)
        submit_ready()


def _remote_run(cell: Cell, threads: int, env: dict, *inputs_done) -> dict:
    """A Ray task: the driver's cache and data folders, then the cell (``inputs_done``: its inputs' results,
    passed only so that Ray starts this task after them)."""
    os.environ.update(env)
    return run(cell, threads)


def ray_address(address: str | None) -> str | None:
    """The cluster to join: ``address``, else ``$QLIB_RAY_ADDRESS``, else None (a Ray runtime on this machine)."""
    return address or os.environ.get("QLIB_RAY_ADDRESS") or None


@EXECUTORS.register("ray")
def ray_executor(todo: list[Cell], *, threads: int, address: str | None, gpus: float, bar, **_) -> dict:
    try:
        import ray  # optional: the cluster extra
    except ImportError:
        raise ParameterError(
            "executor 'ray' needs Ray: pip install -e '.[dev]' (or pip install ray); "
            "the executors 'serial' and 'local' need nothing more"
        ) from None
    if not ray.is_initialized():
        local = {} if ray_address(address) else {"num_cpus": available_cores(), "include_dashboard": False}
        ray.init(address=ray_address(address), log_to_driver=False, **local)

    env = {name: os.environ[name] for name in SHARED_ENV if name in os.environ} | {
        "QLIB_CACHE": str(cache_root().resolve())
    }
    task = ray.remote(_remote_run).options(num_cpus=threads, num_gpus=gpus, max_retries=RESTARTS)
    refs = {}
    for cell in todo:  # dependency order: an input's task exists before the task that reads it
        refs[cell.id] = task.remote(cell, threads, env, *[refs[i.id] for i in cell.inputs if i.id in refs])
    ids = {ref: cid for cid, ref in refs.items()}
    left, runs = list(refs.values()), {}
    while left:
        ready, left = ray.wait(left, num_returns=1)
        runs[ids[ready[0]]] = ray.get(ready[0])
        bar.update()
    return runs


def compute(
    cells: Iterable[Cell],
    executor: str = "serial",
    *,
    threads: int | None = None,
    workers: int | None = None,
    address: str | None = None,
    gpus: float | None = None,
    progress: bool = True,
    desc: str = "cells",
) -> dict:
    """Compute every cell ``cells`` need that the cache lacks, with the named executor, under one progress bar.
    ``threads`` per cell (:func:`threads_per_cell`); ``workers``: processes of the ``local`` executor; ``address``
    and ``gpus`` (per cell, :func:`gpus_per_cell`): ``ray``'s.
    Returns {"cells": how many were pending, "runs": {cell id: ``pipeline.run``'s record in its worker}}."""
    run_with = EXECUTORS.get(executor)
    todo = pending(cells)
    with tqdm(total=len(todo), desc=desc, disable=not progress or not todo, unit="cell") as bar:
        runs = run_with(
            todo, threads=threads_per_cell(threads), workers=workers, address=address, gpus=gpus_per_cell(gpus), bar=bar
        )
    return {"cells": len(todo), "runs": runs}
