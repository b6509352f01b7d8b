"""Artifacts on disk: tensors in safetensors plus a JSON manifest, both written atomically.

An artifact at ``stem`` is two files, ``stem.safetensors`` and ``stem.json``. The manifest is written
last and records the tensor file's SHA-256, so a half-written or altered artifact is detected on load
instead of being read as data. Nothing here unpickles.
"""

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


class ArtifactError(RuntimeError):
    """A missing, incomplete or corrupted artifact."""


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then move it onto ``path``: readers see the old file
    or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tensor_digest(tensors, extra: dict | None = None) -> str:
    """SHA-256 over tensors' bytes (in order) and a JSON-serialisable ``extra``: an identity for cache keys."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps(extra or {}, sort_keys=True).encode())
    return h.hexdigest()


def paths(stem) -> tuple[Path, Path]:
    stem = Path(stem)
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save(stem, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write ``tensors`` and the JSON-serialisable ``meta`` under ``stem``."""
    tensor_path, manifest_path = paths(stem)
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(tensor_path, lambda tmp: save_file(contiguous, tmp))
    manifest = {"sha256": _sha256(tensor_path), "meta": meta}
    write_json(manifest_path, manifest)


def write_json(path: Path, value) -> None:
    """Write the JSON of ``value`` to ``path`` atomically."""
    text = json.dumps(value, indent=2, sort_keys=True)
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def exists(stem) -> bool:
    return all(p.exists() for p in paths(stem))


def load(stem) -> tuple[dict[str, torch.Tensor], dict]:
    """Read an artifact written by :func:`save`; raise :class:`ArtifactError` if it is missing or corrupted."""
    tensor_path, manifest_path = paths(stem)
    for p in (manifest_path, tensor_path):
        if not p.exists():
            raise ArtifactError(f"artifact {stem} is incomplete: {p} is missing; delete {stem}.* to recompute it")
    try:
        manifest = json.loads(manifest_path.read_text())
        expected, meta = manifest["sha256"], manifest["meta"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ArtifactError(
            f"artifact manifest {manifest_path} is corrupted ({e}): a manifest is JSON with the tensor "
            f"file's sha256 and meta; delete {stem}.* to recompute it"
        ) from e
    actual = _sha256(tensor_path)
    if actual != expected:
        raise ArtifactError(
            f"artifact {tensor_path} is corrupted: sha256 {actual[:12]}… does not match the manifest's "
            f"{expected[:12]}…; delete {stem}.* to recompute it"
        )
    try:
        tensors = load_file(tensor_path)
    except SafetensorError as e:
        raise ArtifactError(
            f"artifact {tensor_path} cannot be read as safetensors ({e}); only safetensors files are "
            f"loaded, never pickles: delete {stem}.* to recompute it"
        ) from e
    return tensors, meta
