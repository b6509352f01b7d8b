import gzip
import pickle

import effects
import numpy as np
import pytest
import torch
import torch.nn.functional as nnf
from torch import nn

from qlib.data import Dataset


def write_idx(path, array: np.ndarray, compress=True):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def write_fake_fashion(folder, n_train=60, n_test=20, seed=0, compress=True):
    """Fashion-MNIST's four IDX files with random content; returns the training images and labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, compress)
        out[prefix] = (images, labels)
    return out


def write_fake_cifar(folder, per_batch=10, seed=0):
    """torchvision's cifar-10-batches-py layout with tiny batches; returns {file name: (data, labels)}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data, "filenames": [b"x"] * per_batch}, f)
        out[name] = (data, labels)
    return out


@pytest.fixture
def data_dirs(tmp_path, monkeypatch):
    """Point the project and system data folders at empty temporary folders."""
    local, system = tmp_path / "data", tmp_path / "system"
    local.mkdir()
    system.mkdir()
    monkeypatch.setenv("QLIB_DATA", str(local))
    monkeypatch.setenv("QLIB_SYSTEM_DATA", str(system))
    return local, system


def toy_dataset(n=200, seed=0, num_classes=4, size=12, channels=1) -> Dataset:
    """A learnable toy problem: each class is a bright square in its own quadrant, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    x = 0.3 * torch.rand(n, channels, size, size, generator=g)
    half = size // 2
    for c in range(num_classes):
        r, q = divmod(c, 2)
        x[y == c, :, r * half : (r + 1) * half, q * half : (q + 1) * half] += 0.6
    return Dataset("toy", x.clamp(0, 1), y.long(), num_classes, (0.5,) * channels, (0.25,) * channels)


@pytest.fixture
def toy():
    return toy_dataset()


def blobs(n=300, seed=0):
    """Three overlapping classes of 1×2×2 'images' in [0, 1]: logistic regression has a finite optimum."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.tensor([[0.3, 0.3, 0.6, 0.5], [0.6, 0.4, 0.3, 0.5], [0.45, 0.65, 0.45, 0.4]])
    x = (centres[y] + 0.12 * torch.randn(n, 4, generator=g)).clamp(0, 1)
    return Dataset("blobs", x.view(n, 1, 2, 2), y, 3, (0.5,), (0.25,))


def exact_logistic_regression(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """The minimiser of the cross-entropy of multinomial logistic regression on (x, y), by float64 LBFGS."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), int(y.max()) + 1)).double()
    opt = torch.optim.LBFGS(
        model.parameters(),
        lr=1,
        max_iter=1000,
        tolerance_grad=1e-14,
        tolerance_change=1e-16,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = nnf.cross_entropy(model(x.double()), y)
        loss.backward()
        return loss

    opt.step(closure)
    return model


def pytest_generate_tests(metafunc):
    """A test that asserts an effect of training runs once per seed of ``QLIB_EFFECT_SEEDS`` (tests/effects.py)."""
    if "effect_seed" in metafunc.fixturenames:
        metafunc.parametrize("effect_seed", effects.seeds(), scope="module", ids=lambda s: f"seed{s}")


def pytest_collection_modifyitems(items):
    for item in items:
        if "effect_seed" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.effect)


@pytest.fixture
def effect(request, effect_seed):
    """The seed of an effect test and ``check(name, value)`` against its bound (tests/effects.py)."""
    return effects.Effect(effect_seed, request.function, request.node.nodeid)
