"""Finding 1 of the GPU issue: everything the cache returns, and every model built to be filled, lands on the one
device ``qlib.devices.resolve`` names. A CPU-only machine cannot tell a forgotten ``.to`` from ``cpu:0``, so these
tests point ``resolve`` at the ``meta`` device: a model left on the CPU shows."""

import pytest
import torch
from torch import nn

from qlib import artifacts, cells, devices
from qlib.cache import cached_model
from qlib.data import SOURCES, _find
from qlib.paper import FP
from qlib.presets import load_preset
from qlib.quant import parse_scheme

META = torch.device("meta")
pytestmark = pytest.mark.filterwarnings("ignore:for .*copying from a non-meta:UserWarning")


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))


def point_at_meta(monkeypatch):
    monkeypatch.setattr(devices, "resolve", lambda device="auto": META)


def test_a_model_loaded_from_the_cache_is_on_the_device(monkeypatch):
    cached_model("t", {"k": 1}, lambda: nn.Linear(3, 2), lambda m: {})  # computed on the CPU
    point_at_meta(monkeypatch)
    model, _ = cached_model("t", {"k": 1}, lambda: nn.Linear(3, 2), lambda m: pytest.fail("the entry exists"))
    assert all(p.device == META for p in model.parameters())


def test_a_model_built_to_be_filled_is_on_the_device_before_it_is_filled(monkeypatch):
    """GradPC's ŵ is built and filled by copying, never trained: its distance to a model on the device needs it
    there."""
    point_at_meta(monkeypatch)
    monkeypatch.setattr(artifacts, "save", lambda *a, **k: None)  # a meta tensor has no bytes to store
    seen = []
    model, _ = cached_model("t", {"k": 2}, lambda: nn.Linear(3, 2), lambda m: seen.append(devices.of(m)) or {})
    assert seen == [META] and devices.of(model) == META


@pytest.mark.skipif(_find(SOURCES.get("fashion-mnist"), "train") is None, reason="Fashion-MNIST not installed")
def test_the_studys_cached_models_come_back_on_the_device(monkeypatch):
    """The clean FP model, a QAT model, GradPC's target and a targeted surrogate, computed on the CPU, then read from
    the cache with the device pointed elsewhere: each comes back there."""
    cfg = load_preset("smoke", train_size=200, test_size=100)
    scheme = parse_scheme("4W")
    models = [
        cells.trained(cfg, 0, FP),
        cells.trained(cfg, 0, scheme),
        cells.target(cfg, 0),
        cells.trained(cfg, 0, FP, curve=False),
    ]
    for cell in models:
        cell.value()
    point_at_meta(monkeypatch)
    loaded = [cell.value()[0] for cell in models]
    assert [devices.of(m) for m in loaded] == [META] * 4


def test_resolve_reads_auto_as_cuda_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.resolve("auto") == torch.device("cuda") and devices.resolve("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.resolve() == torch.device("cpu")
