import json

import pytest
import torch

from qlib import artifacts
from qlib.poison import PoisonSet


def make(n=5, eps_d=0.05):
    g = torch.Generator().manual_seed(0)
    return PoisonSet(
        torch.rand(n, 1, 28, 28, generator=g),
        torch.arange(n),
        torch.arange(10, 10 + n),
        eps_d,
        {"attack": "label_flip", "params": {"k": 1}, "seed": 3},
    )


def test_round_trip(tmp_path):
    p = make()
    p.save(tmp_path / "nu")
    q = PoisonSet.load(tmp_path / "nu")
    assert torch.equal(p.x, q.x) and torch.equal(p.y, q.y) and torch.equal(p.indices, q.indices)
    assert q.eps_d == p.eps_d and q.provenance == p.provenance
    assert not list(tmp_path.glob(".*tmp")), "temporary files left behind"


@pytest.mark.parametrize("eps_d", [0, -0.1, 1.5, float("nan"), "0.03"])
def test_budget_outside_unit_interval_is_rejected(eps_d):
    with pytest.raises(ValueError, match=r"allowed is a number in \(0, 1\]"):
        make(eps_d=eps_d)


def test_images_outside_pixel_range_are_rejected():
    p = make()
    with pytest.raises(ValueError, match=r"leave \[0, 1\]"):
        PoisonSet(p.x + 1, p.y, p.indices, p.eps_d)


def test_mismatched_indices_are_rejected():
    p = make()
    with pytest.raises(ValueError, match="indices"):
        PoisonSet(p.x, p.y, p.indices[:2], p.eps_d)


def test_corrupted_tensor_file_is_detected(tmp_path):
    make().save(tmp_path / "nu")
    path = tmp_path / "nu.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(artifacts.ArtifactError, match="corrupted"):
        PoisonSet.load(tmp_path / "nu")


def test_missing_or_broken_manifest_is_detected(tmp_path):
    with pytest.raises(artifacts.ArtifactError, match="missing"):
        PoisonSet.load(tmp_path / "nothing")
    make().save(tmp_path / "nu")
    (tmp_path / "nu.json").write_text("{not json")
    with pytest.raises(artifacts.ArtifactError, match="manifest"):
        PoisonSet.load(tmp_path / "nu")


def test_other_artifacts_are_not_read_as_poison(tmp_path):
    artifacts.save(tmp_path / "w", {"weight": torch.zeros(3)}, {"kind": "model"})
    with pytest.raises(artifacts.ArtifactError, match="not a PoisonSet"):
        PoisonSet.load(tmp_path / "w")


def test_interrupted_write_is_detected_on_load(tmp_path, monkeypatch):
    make(n=5).save(tmp_path / "nu")
    monkeypatch.setattr(json, "dumps", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError):
        make(n=6).save(tmp_path / "nu")
    monkeypatch.undo()
    # the tensor file was replaced before the manifest failed: the mismatch is caught, not read silently
    with pytest.raises(artifacts.ArtifactError, match="corrupted"):
        PoisonSet.load(tmp_path / "nu")
