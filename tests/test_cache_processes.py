"""The cache shared by real processes: an entry is computed once however many ask for it at once, everyone gets the
same tensors, and a writer killed while holding an entry's lock blocks nobody and leaves nothing behind."""

import multiprocessing
import os
import signal
import time
from pathlib import Path

import torch
from torch import nn

from qlib import artifacts

KEY = {"model": "shared", "seed": 0}


def build():
    return nn.Linear(4, 3)


def ask_for_the_model(cache: str, trainings: str, ready=None) -> list:
    """A worker: wait for the others, then ask for the shared model. Training records itself in ``trainings``, is
    slow enough that the others ask while it runs, and draws weights from its own process id, so two trainings
    would give two different models."""
    os.environ["QLIB_CACHE"] = cache
    from qlib.cache import cached_model

    def train(model):
        with open(trainings, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(1.5)
        torch.manual_seed(os.getpid())
        with torch.no_grad():
            for p in model.parameters():
                p.normal_()
        return {"trained by": os.getpid()}

    if ready is not None:
        ready.wait()
    model, result = cached_model("trained", KEY, build, train)
    return [t.tolist() for t in model.state_dict().values()] + [result]


def test_concurrent_processes_compute_an_entry_once_and_get_identical_tensors(tmp_path):
    cache, trainings = str(tmp_path / "cache"), str(tmp_path / "trainings.txt")
    spawn = multiprocessing.get_context("spawn")
    with spawn.Manager() as manager:
        ready = manager.Barrier(4)
        with spawn.Pool(4) as pool:
            results = pool.starmap(ask_for_the_model, [(cache, trainings, ready)] * 4)
    assert len(Path(trainings).read_text().split()) == 1, "more than one process trained the model"
    assert all(r == results[0] for r in results)
    (manifest,) = (tmp_path / "cache" / "trained").glob("*.json")
    artifacts.load(manifest.with_suffix(""))  # the entry verifies


def killed_writer(cache: str) -> None:
    os.environ["QLIB_CACHE"] = cache
    from qlib.cache import cache_root, cached_model, key_hash

    def train(model):
        stem = cache_root() / "trained" / key_hash(KEY)
        stem.parent.mkdir(parents=True, exist_ok=True)
        (stem.parent / f".{stem.name}.safetensors.abc123.tmp").write_bytes(
            b"half a tensor file"
        )  # as atomic_write names it
        os.kill(os.getpid(), signal.SIGKILL)

    cached_model("trained", KEY, build, train)


def test_a_writer_killed_holding_the_lock_blocks_nobody(tmp_path):
    cache = str(tmp_path / "cache")
    spawn = multiprocessing.get_context("spawn")
    writer = spawn.Process(target=killed_writer, args=(cache,))
    writer.start()
    writer.join(60)
    assert writer.exitcode == -signal.SIGKILL
    assert list((tmp_path / "cache" / "trained").glob(".*.tmp")), "the killed writer left no scratch file to clean"
    with spawn.Pool(1) as pool:  # waits for the lock at most 60 s
        pool.apply_async(ask_for_the_model, (cache, str(tmp_path / "trainings.txt"))).get(timeout=60)
    assert len((tmp_path / "trainings.txt").read_text().split()) == 1
    assert not list((tmp_path / "cache" / "trained").glob(".*.tmp")), "the dead writer's scratch file is still there"
