"""A disk cache of trained models, attack targets, poison sets and evaluations, keyed by what determines them.

A second run of a notebook with the same parameters loads its models and poisons instead of redoing them,
and a killed run resumes from the last finished entry. Entries
are artifacts (safetensors + checksummed manifest) under ``$QLIB_CACHE`` (default ``cache/`` in the
project). The key holds the training fields, seed and scheme, not the code: after changing training or
quantization code, delete the cache (``rm -rf cache``). A corrupted entry is an error that names the file.
"""

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

from torch import nn

from . import __version__, artifacts
from .attacks.base import validate
from .data import PROJECT_ROOT, Dataset
from .poison import PoisonSet


def cache_root() -> Path:
    return Path(os.environ.get("QLIB_CACHE", PROJECT_ROOT / "cache"))


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps({**key, "qlib": __version__}, sort_keys=True).encode()).hexdigest()[:16]


def cached_model(kind: str, key: dict, build: Callable[[], nn.Module], train: Callable[[nn.Module], dict]) -> tuple[nn.Module, dict]:
    """``build()`` a model, then load its weights from the cache, or ``train(model)`` it and store the weights
    with the JSON-serialisable result ``train`` returned. Returns (model, result)."""
    stem = cache_root() / kind / key_hash(key)
    model = build()
    if artifacts.exists(stem):
        tensors, meta = artifacts.load(stem)
        model.load_state_dict(tensors)
        return model, meta["result"]
    result = train(model)
    artifacts.save(stem, model.state_dict(), {"kind": kind, "key": key, "result": result})
    return model, result


def cached_poison(key: dict, make: Callable[[], PoisonSet], clean: Dataset) -> tuple[PoisonSet, float]:
    """Load the poison set of ``key``, or ``make()`` it and store it with its wall time. Either way it is
    validated against ``clean``. Returns (poison, seconds the attack took when it was made)."""
    stem = cache_root() / "poison" / key_hash(key)
    if artifacts.exists(stem):
        tensors, meta = artifacts.load(stem)
        return validate(PoisonSet.from_artifact(stem, tensors, meta), clean), meta["seconds"]
    start = time.perf_counter()
    poison = validate(make(), clean)
    seconds = time.perf_counter() - start
    poison.save(stem, key=key, seconds=seconds)
    return poison, seconds


def cached_result(kind: str, key: dict, compute: Callable[[], dict]) -> dict:
    """A small JSON result of ``key`` (an evaluation): read it, or ``compute()`` it and store it atomically."""
    path = cache_root() / kind / f"{key_hash(key)}.json"
    if path.exists():
        try:
            return json.loads(path.read_text())["result"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise artifacts.ArtifactError(f"cached result {path} is corrupted: {e}") from e
    result = compute()
    artifacts.write_json(path, {"kind": kind, "key": key, "result": result})
    return result
