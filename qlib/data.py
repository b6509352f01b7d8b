"""Datasets as in-memory tensors: images float in [0, 1], NCHW; labels int64.

Normalisation is not applied here but by the model's first layer, so attacks work in pixel space.
Each dataset is found, in order, (1) under ``$QLIB_DATA`` (default: ``data/`` in the project),
(2) in the system dataset folder (``$QLIB_SYSTEM_DATA``, default ``/usr/share/datasets``), where
Debian's ``dataset-fashion-mnist`` package installs Fashion-MNIST, (3) by torchvision's download.
"""

import gzip
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .registry import Registry

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Dataset:
    """A labelled image set held in memory. ``mean``/``std`` are the per-channel constants the model normalises with.
    ``origin``: where each image sits in the published split, in the order :func:`load` reads it (a subset keeps its
    images' places, so an index into the full split can be mapped onto it); None for a set made otherwise (μ + ν)."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    origin: torch.Tensor | None = None

    def __post_init__(self):
        if self.x.ndim != 4 or not self.x.is_floating_point():
            raise ValueError(f"{self.name}: images must be float NCHW, got {tuple(self.x.shape)} {self.x.dtype}")
        if self.y.dtype != torch.int64 or self.y.shape != (len(self.x),):
            raise ValueError(
                f"{self.name}: labels must be int64 of shape ({len(self.x)},), got {tuple(self.y.shape)} {self.y.dtype}"
            )
        if self.origin is not None and (self.origin.dtype != torch.int64 or self.origin.shape != (len(self.x),)):
            raise ValueError(
                f"{self.name}: origin must be int64 of shape ({len(self.x)},), got {tuple(self.origin.shape)}"
            )

    def __len__(self) -> int:
        return len(self.y)

    @property
    def in_channels(self) -> int:
        return self.x.shape[1]

    def replace(self, x: torch.Tensor, y: torch.Tensor) -> "Dataset":
        return Dataset(self.name, x, y, self.num_classes, self.mean, self.std)

    def subset(self, n: int | None, seed: int = 0, exclude: "Dataset | None" = None) -> "Dataset":
        """A class-balanced random subset of ``n`` samples (all of them if ``n`` is None), seeded; with ``exclude``
        (a subset of the same split), drawn only among the images it does not hold (matched by ``origin``)."""
        if exclude is not None:
            if self.origin is None or exclude.origin is None:
                raise ValueError("subset(exclude=...) needs both sets' origins (subsets of a loaded split)")
            keep = ~torch.isin(self.origin, exclude.origin)
            rest = Dataset(
                self.name, self.x[keep], self.y[keep], self.num_classes, self.mean, self.std, self.origin[keep]
            )
            return rest.subset(n, seed)
        if n is None or n >= len(self):
            return self
        if n <= 0:
            raise ValueError(f"subset size must be positive, got {n}")
        g = torch.Generator().manual_seed(seed)
        per_class = [torch.nonzero(self.y == c).flatten() for c in range(self.num_classes)]
        quota = [n // self.num_classes + (c < n % self.num_classes) for c in range(self.num_classes)]
        if any(q > len(idx) for q, idx in zip(quota, per_class)):
            raise ValueError(f"{self.name} has too few samples in some class for a balanced subset of {n}")
        chosen = torch.cat([idx[torch.randperm(len(idx), generator=g)[:q]] for q, idx in zip(quota, per_class)])
        chosen = chosen[torch.randperm(len(chosen), generator=g)]
        origin = self.origin[chosen] if self.origin is not None else None
        return Dataset(self.name, self.x[chosen], self.y[chosen], self.num_classes, self.mean, self.std, origin)

    def to(self, device) -> "Dataset":
        return Dataset(
            self.name, self.x.to(device), self.y.to(device), self.num_classes, self.mean, self.std, self.origin
        )

    def positions(self, published: torch.Tensor) -> torch.Tensor:
        """Where the images at indices ``published`` of the full split sit in this set: -1 for those it lacks."""
        if self.origin is None:
            raise ValueError(
                f"{self.name}: this set was not loaded from a published split (no origin), so indices "
                "into the split cannot be mapped onto it"
            )
        where = torch.full((int(self.origin.max()) + 1 if len(self.origin) else 0,), -1, dtype=torch.int64)
        where[self.origin] = torch.arange(len(self.origin))
        inside = (published >= 0) & (published < len(where))
        out = torch.full_like(published, -1)
        out[inside] = where[published[inside]]
        return out


def mix(clean: Dataset, poison) -> Dataset:
    """The training set a poison makes: μ + ν, the clean set with the poisoned points appended, or, for a
    poison whose provenance says ``mode: "replace"`` (unlearnable examples, which perturb μ itself), μ with
    each poisoned point in the place of the clean image it was made from."""
    if poison.x.shape[1:] != clean.x.shape[1:]:
        raise ValueError(
            f"poison images {tuple(poison.x.shape[1:])} do not match clean images {tuple(clean.x.shape[1:])}"
        )
    if poison.provenance.get("mode") == "replace":
        x, y = clean.x.clone(), clean.y.clone()
        x[poison.indices], y[poison.indices] = poison.x.to(x), poison.y.to(y)
        return clean.replace(x, y)
    return clean.replace(torch.cat([clean.x, poison.x.to(clean.x)]), torch.cat([clean.y, poison.y.to(clean.y)]))


class DataNotFoundError(FileNotFoundError):
    """No copy of a dataset could be found or downloaded."""


def data_root() -> Path:
    return Path(os.environ.get("QLIB_DATA", PROJECT_ROOT / "data"))


def system_root() -> Path:
    return Path(os.environ.get("QLIB_SYSTEM_DATA", "/usr/share/datasets"))


@dataclass(frozen=True)
class Source:
    """Where a dataset's files live and how to read them."""

    local_dirs: tuple[str, ...]  # relative to data_root()
    system_dir: str  # relative to system_root()
    files: dict[str, tuple[str, ...]]  # split -> required file names
    read: Callable[[Path, tuple[str, ...]], tuple[np.ndarray, np.ndarray]]  # -> uint8 NCHW, labels
    download: Callable[[Path], None]
    system_hint: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sizes: dict[str, int]  # split -> number of images, for planning without the files (qlib.cost)


# -- Fashion-MNIST: IDX files, gzipped or not -------------------------------------------------


def _open_maybe_gz(path: Path):
    gz = path.with_name(path.name + ".gz")
    return gzip.open(gz, "rb") if gz.exists() else open(path, "rb")


def _has_file(folder: Path, name: str) -> bool:
    return (folder / name).exists() or (folder / (name + ".gz")).exists()


def _read_idx(path: Path) -> np.ndarray:
    with _open_maybe_gz(path) as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {shape} bytes of data, found {data.size} (truncated?)")
    return data.reshape(shape)


def _read_fashion(folder: Path, files: tuple[str, ...]):
    images, labels = (_read_idx(folder / f) for f in files)
    return images[:, None], labels


def _download_fashion(root: Path) -> None:
    from torchvision.datasets import FashionMNIST  # only to download, which needs the network

    for train in (True, False):
        FashionMNIST(root, train=train, download=True)


# -- CIFAR-10: torchvision's python batches, read with a restricted unpickler ----------------


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only dicts, lists, strings and numpy arrays: what a CIFAR batch file holds."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")
        return super().find_class(module, name)


def _read_cifar(folder: Path, files: tuple[str, ...]):
    images, labels = [], []
    for name in files:
        with open(folder / name, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="latin1").load()
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch.get("labels", batch.get("fine_labels")), dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _download_cifar(root: Path) -> None:
    from torchvision.datasets import CIFAR10  # only to download, which needs the network

    CIFAR10(root, train=True, download=True)


SOURCES = Registry("dataset")

SOURCES.register("fashion-mnist")(
    Source(
        local_dirs=("fashion-mnist", "FashionMNIST/raw"),
        system_dir="fashion-mnist",
        files={
            "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        },
        read=_read_fashion,
        download=_download_fashion,
        system_hint="apt-get install dataset-fashion-mnist",
        num_classes=10,
        mean=(0.2860,),
        std=(0.3530,),
        sizes={"train": 60000, "test": 10000},
    )
)

SOURCES.register("cifar10")(
    Source(
        local_dirs=("cifar-10-batches-py",),
        system_dir="cifar10/cifar-10-batches-py",
        files={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        read=_read_cifar,
        download=_download_cifar,
        system_hint="copy torchvision's cifar-10-batches-py folder there",
        num_classes=10,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        sizes={"train": 50000, "test": 10000},
    )
)


def _find(source: Source, split: str) -> Path | None:
    candidates = [data_root() / d for d in source.local_dirs] + [system_root() / source.system_dir]
    for folder in candidates:
        if all(_has_file(folder, f) for f in source.files[split]):
            return folder
    return None


def locate(name: str, split: str = "train", download: bool = True) -> Path:
    """The folder holding ``name``'s ``split`` files, downloading into ``data_root()`` as a last resort."""
    source = SOURCES.get(name)
    if split not in source.files:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(source.files)}")
    folder = _find(source, split)
    if folder is not None:
        return folder
    reason = "download disabled"
    if download:
        try:
            source.download(data_root())
        except Exception as e:  # no internet, no torchvision mirror: fall through to the error below
            reason = f"{type(e).__name__}: {e}"
        folder = _find(source, split)
        if folder is not None:
            return folder
    raise DataNotFoundError(
        f"dataset {name!r} ({split}) not found. Tried, in order:\n"
        f"  1. the project data folder: {' or '.join(str(data_root() / d) for d in source.local_dirs)}"
        f" (set QLIB_DATA to use another folder)\n"
        f"  2. the system dataset folder: {system_root() / source.system_dir} ({source.system_hint})\n"
        f"  3. torchvision's download into {data_root()}: {reason}"
    )


def load(name: str, split: str = "train", download: bool = True) -> Dataset:
    """Load a registered dataset's split into memory."""
    source = SOURCES.get(name)
    folder = locate(name, split, download)
    images, labels = source.read(folder, source.files[split])
    x = torch.from_numpy(images.copy()).float().div_(255)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    return Dataset(name, x, y, source.num_classes, source.mean, source.std, torch.arange(len(y)))
