"""A disk cache of artifacts (trained models; tensors with a manifest, such as poison sets) and small JSON results
(evaluations), keyed by what determines them. It stores what it is given and knows nothing of what the artifacts mean.

A second run of a notebook with the same parameters loads its models and poisons instead of redoing them,
and a killed run resumes from the last finished entry. Entries are artifacts (safetensors + checksummed
manifest) or small JSON files under ``$QLIB_CACHE`` (default ``cache/`` in the project). An entry is a cell of
``qlib.pipeline``: its key holds what determines it (training fields, seed, scheme, inputs) and the version of
the code that computes it (``qlib.cells.VERSIONS``, an attack's ``Needs.version``), so changed code that bumps
its version gets new entries. A corrupted entry is an error that names the file.

Several processes may share a cache (a cluster run, two notebooks at once). Each entry has a lock
(``.locks/<kind>-<key>.lock``, taken with ``filelock``): whoever takes it first computes the entry, the others wait
and then load it, so an entry is computed once and nobody reads one that is being written. The operating system
drops the lock of a process that dies, so a crashed writer blocks nobody; its scratch files are removed by the
next holder. Every entry records the machine it was computed on (``qlib.machine``: CPU, torch, device,
numeric policy): the device is the one the model was trained on, or the one the caller passes.
"""

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from filelock import FileLock, Timeout
from torch import nn

from . import __version__, artifacts, devices
from .data import PROJECT_ROOT
from .machine import machine

T = TypeVar("T")
COMPUTED: set[Path] = set()  # the entries (stems under their cache root) this process computed and wrote


def cache_root() -> Path:
    return Path(os.environ.get("QLIB_CACHE", PROJECT_ROOT / "cache"))


def has(kind: str, key: dict) -> bool:
    """Does the cache hold the finished entry of ``kind`` and ``key`` (an artifact or a JSON result)?"""
    stem = cache_root() / kind / key_hash(key)
    return stem.with_name(f"{stem.name}.json").exists() or artifacts.exists(stem)


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps({**key, "qlib": __version__}, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def entry_lock(stem: Path):
    """Hold the lock of the cache entry at ``stem`` (waiting, and saying so, while another process holds it), then
    remove what a writer that died while holding it left behind. An flock lock: the OS drops it when its holder
    dies, and it is never replaced by a marker file that would outlive one."""
    locks = stem.parent.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock = FileLock(locks / f"{stem.parent.name}-{stem.name}.lock", is_singleton=True, fallback_to_soft=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(
            f"qlib: waiting for another process to finish cache entry {stem.parent.name}/{stem.name}", file=sys.stderr
        )
        lock.acquire()
    try:
        for scratch in stem.parent.glob(f".{stem.name}.*.tmp"):
            scratch.unlink(missing_ok=True)
        yield
    finally:
        lock.release()


# A finished entry never changes (its writer held the lock and wrote the manifest last), so an entry that exists is
# read without the lock, which also lets a read-only cache be used; one that does not is computed under it.


def cached_model(
    kind: str, key: dict, build: Callable[[], nn.Module], train: Callable[[nn.Module], dict], device: str = "auto"
) -> tuple[nn.Module, dict]:
    """``build()`` a model and put it on ``devices.resolve(device)``, then load its weights from the cache, or
    ``train(model)`` it there and store the weights with the JSON-serialisable result ``train`` returned. Either
    way the model comes back on that device. Returns (model, result)."""
    stem = cache_root() / kind / key_hash(key)
    model = devices.place(build(), device)
    if not artifacts.exists(stem):
        with entry_lock(stem):
            if not artifacts.exists(stem):
                result = train(model)
                artifacts.save(
                    stem,
                    model.state_dict(),
                    {"kind": kind, "key": key, "result": result, "machine": machine(str(devices.of(model)))},
                )
                COMPUTED.add(stem)
                return model, result
    tensors, meta = artifacts.load(stem)
    model.load_state_dict(tensors)
    return model, meta["result"]


def cached_artifact(
    kind: str,
    key: dict,
    make: Callable[[], T],
    save: Callable[[T, Path, dict], None],
    read: Callable[[Path, dict, dict], T],
    device: str = "auto",
) -> tuple[T, float]:
    """The artifact of ``key``: ``read(stem, tensors, manifest)`` of the stored one, or ``make()`` it (on ``device``),
    timed, and ``save(value, stem, meta)`` it, ``meta`` holding the key, the seconds and the machine for its manifest.
    Returns (value, seconds it took when it was made)."""
    stem = cache_root() / kind / key_hash(key)
    if not artifacts.exists(stem):
        with entry_lock(stem):
            if not artifacts.exists(stem):
                start = time.perf_counter()
                value = make()
                seconds = time.perf_counter() - start
                save(value, stem, {"key": key, "seconds": seconds, "machine": machine(device)})
                COMPUTED.add(stem)
                return value, seconds
    tensors, meta = artifacts.load(stem)
    return read(stem, tensors, meta), meta["seconds"]


def cached_result(kind: str, key: dict, compute: Callable[[], dict], device: str = "auto") -> dict:
    """A small JSON result of ``key`` (an evaluation): read it, or ``compute()`` it (on ``device``) and store it
    atomically."""
    stem = cache_root() / kind / key_hash(key)
    path = stem.with_name(f"{stem.name}.json")
    if not path.exists():
        with entry_lock(stem):
            if not path.exists():
                result = compute()
                artifacts.write_json(path, {"kind": kind, "key": key, "result": result, "machine": machine(device)})
                COMPUTED.add(stem)
                return result
    try:
        return json.loads(path.read_text())["result"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise artifacts.ArtifactError(f"cached result {path} is corrupted ({e}); delete it to recompute it") from e
