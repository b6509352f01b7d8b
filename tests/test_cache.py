import pytest
import torch
from torch import nn

from qlib import artifacts
from qlib.cache import cache_root, cached_model, key_hash


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))


def test_second_call_loads_instead_of_training():
    calls = []

    def train(model):
        calls.append(1)
        with torch.no_grad():
            model.weight.fill_(len(calls))
        return {"acc": 0.5}

    build = lambda: nn.Linear(3, 2)
    a, ra = cached_model("t", {"seed": 1}, build, train)
    b, rb = cached_model("t", {"seed": 1}, build, train)
    assert calls == [1] and ra == rb == {"acc": 0.5}
    assert torch.equal(a.weight, b.weight) and torch.equal(b.weight, torch.ones(2, 3))
    cached_model("t", {"seed": 2}, build, train)
    assert len(calls) == 2  # another key trains again


def test_key_order_does_not_matter_and_values_do():
    assert key_hash({"a": 1, "b": 2}) == key_hash({"b": 2, "a": 1}) != key_hash({"a": 1, "b": 3})


def test_corrupted_entry_is_an_error_naming_the_file():
    cached_model("t", {"k": 1}, lambda: nn.Linear(2, 2), lambda m: {})
    (tensor_file,) = (cache_root() / "t").glob("*.safetensors")
    tensor_file.write_bytes(tensor_file.read_bytes()[:-4] + b"xxxx")
    with pytest.raises(artifacts.ArtifactError, match=tensor_file.name):
        cached_model("t", {"k": 1}, lambda: nn.Linear(2, 2), lambda m: {})
