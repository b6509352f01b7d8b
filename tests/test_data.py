import dataclasses
import pickle

import numpy as np
import pytest
import torch
from conftest import toy_dataset, write_fake_cifar, write_fake_fashion

from qlib import data
from qlib.data import SOURCES, DataNotFoundError, load, locate, mix
from qlib.poison import PoisonSet


def test_fashion_loads_from_project_folder_as_float_nchw(data_dirs):
    local, _ = data_dirs
    raw = write_fake_fashion(local / "fashion-mnist")
    train = load("fashion-mnist", "train", download=False)
    assert train.x.shape == (60, 1, 28, 28) and train.x.dtype == torch.float32
    assert train.y.dtype == torch.int64
    assert 0 <= train.x.min() and train.x.max() <= 1
    np.testing.assert_array_equal((train.x[:, 0] * 255).round().byte().numpy(), raw["train"][0])
    np.testing.assert_array_equal(train.y.numpy(), raw["train"][1])
    assert len(load("fashion-mnist", "test", download=False)) == 20


def test_project_folder_wins_over_system_folder(data_dirs):
    local, system = data_dirs
    write_fake_fashion(system / "fashion-mnist", n_train=30)
    assert locate("fashion-mnist", download=False) == system / "fashion-mnist"
    write_fake_fashion(local / "fashion-mnist", n_train=50)
    assert locate("fashion-mnist", download=False) == local / "fashion-mnist"
    assert len(load("fashion-mnist", download=False)) == 50


def test_uncompressed_torchvision_layout_is_found(data_dirs):
    local, _ = data_dirs
    write_fake_fashion(local / "FashionMNIST" / "raw", compress=False)
    assert len(load("fashion-mnist", download=False)) == 60


def test_download_is_the_last_resort(data_dirs, monkeypatch):
    local, _ = data_dirs
    calls = []

    def fake_download(root):
        calls.append(root)
        write_fake_fashion(root / "FashionMNIST" / "raw", n_train=40)

    src = SOURCES.get("fashion-mnist")
    monkeypatch.setitem(SOURCES._items, "fashion-mnist", dataclasses.replace(src, download=fake_download))
    assert len(load("fashion-mnist")) == 40
    assert calls == [local]


def test_missing_data_error_names_all_three_ways(data_dirs, monkeypatch):
    def no_internet(root):
        raise OSError("network unreachable")

    src = SOURCES.get("fashion-mnist")
    monkeypatch.setitem(SOURCES._items, "fashion-mnist", dataclasses.replace(src, download=no_internet))
    with pytest.raises(DataNotFoundError) as err:
        load("fashion-mnist")
    msg = str(err.value)
    assert "QLIB_DATA" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "download" in msg and "network unreachable" in msg


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist2'.*cifar10, fashion-mnist"):
        load("mnist2")


def test_truncated_idx_file_is_an_error(data_dirs):
    local, _ = data_dirs
    folder = local / "fashion-mnist"
    write_fake_fashion(folder, compress=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        load("fashion-mnist", download=False)


def test_cifar_loader_reads_tiny_batch_files(data_dirs):
    local, _ = data_dirs
    raw = write_fake_cifar(local / "cifar-10-batches-py")
    train = load("cifar10", "train", download=False)
    test = load("cifar10", "test", download=False)
    assert train.x.shape == (50, 3, 32, 32) and test.x.shape == (10, 3, 32, 32)
    first, labels = raw["data_batch_1"]
    np.testing.assert_array_equal((train.x[:10] * 255).round().byte().numpy().reshape(10, -1), first)
    assert train.y[:10].tolist() == labels
    assert len(train.mean) == 3


def test_cifar_loader_refuses_arbitrary_pickles(data_dirs):
    local, _ = data_dirs
    folder = local / "cifar-10-batches-py"
    write_fake_cifar(folder)
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({"data": dataclasses.replace}, f)  # a callable: a pickle could run code through it
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load("cifar10", download=False)


def test_subset_is_class_balanced_and_seeded():
    d = toy_dataset(n=400, num_classes=4)
    a, b, c = d.subset(101, seed=1), d.subset(101, seed=1), d.subset(101, seed=2)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    assert sorted(torch.bincount(a.y).tolist()) == [25, 25, 25, 26]
    assert d.subset(None) is d


def test_mix_appends_poisons():
    clean = toy_dataset(n=40)
    poison = PoisonSet(clean.x[:3].clone(), torch.tensor([1, 2, 3]), torch.tensor([0, 1, 2]), 0.075, {"attack": "test"})
    mixed = mix(clean, poison)
    assert len(mixed) == 43
    assert torch.equal(mixed.y[-3:], torch.tensor([1, 2, 3]))
    assert torch.equal(mixed.x[:40], clean.x)


@pytest.mark.skipif(data._find(SOURCES.get("fashion-mnist"), "train") is None, reason="Fashion-MNIST not installed")
def test_real_fashion_mnist():
    train, test = load("fashion-mnist", "train", download=False), load("fashion-mnist", "test", download=False)
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert torch.bincount(train.y).tolist() == [6000] * 10
    assert abs(train.x.mean().item() - train.mean[0]) < 1e-3 and abs(train.x.std().item() - train.std[0]) < 1e-3
