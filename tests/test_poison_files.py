"""Poison files: qlib's export reads back bit for bit, layouts and pixel ranges are detected and stated, sources map
from the full split onto the training subset, and every bad file is refused with an error naming the problem."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import toy_dataset
from PIL import Image

from qlib.data import Dataset
from qlib.poison import PoisonFileError, PoisonSet, as_uint8, load_poison

SPLIT = 400  # the toy "published split": the training set below is its even places


@pytest.fixture
def clean() -> Dataset:
    """A 200-image training set drawn from a 400-image split: image i sits at place 2·i of the split."""
    t = toy_dataset(n=200, channels=3)
    return Dataset(t.name, t.x, t.y, t.num_classes, t.mean, t.std, torch.arange(0, SPLIT, 2))


def read(path, clean):
    return load_poison(path, clean, split_size=SPLIT, test_size=50)


def npz(tmp_path, name="p.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def made(clean, n=6, provenance=None) -> PoisonSet:
    idx = torch.arange(n) * 3
    x = (clean.x[idx] + 0.01 * torch.arange(n).view(-1, 1, 1, 1)).clamp(0, 1)
    return PoisonSet(
        x, clean.y[idx], idx, n / len(clean), provenance or {"attack": "toy", "params": {}, "seed": 0, "labels": "kept"}
    )


def test_an_exported_poison_reads_back_bit_for_bit_with_its_indices_mapped_through_the_split(tmp_path, clean):
    nu = made(clean)
    path = nu.save_npz(tmp_path / "nu.npz", clean)
    with np.load(path, allow_pickle=False) as f:
        assert f["x"].dtype == np.float32 and f["x"].shape == (6, 3, 12, 12)
        assert f["indices"].tolist() == [2 * i for i in nu.indices.tolist()]  # places in the split, not the subset
        assert str(f["mode"]) == "add" and json.loads(str(f["provenance"]))["attack"] == "toy"
    back = read(path, clean)
    assert torch.equal(back.x, nu.x) and torch.equal(back.y, nu.y) and torch.equal(back.indices, nu.indices)
    assert back.provenance["mode"] == "append" and back.provenance["made"]["attack"] == "toy"
    assert back.provenance["read"]["sources"] == {"given": 6, "inside": 6, "of": 200}
    assert back.eps_d == 6 / 200


def test_nhwc_uint8_is_detected_transposed_and_scaled_and_the_detection_is_stated(tmp_path, clean):
    x = np.random.default_rng(0).integers(0, 256, (5, 12, 12, 3), dtype=np.uint8)
    back = read(npz(tmp_path, x=x, y=np.arange(5) % 4), clean)
    assert torch.equal(back.x, torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 255))
    assert back.provenance["read"]["layout"].startswith("N×H×W×C")
    assert back.provenance["read"]["pixels"].startswith("uint8 0-255")
    assert (back.indices == -1).all() and back.provenance["read"]["sources"]["given"] == 0


def test_float64_nchw_is_read_as_float32(tmp_path, clean):
    x = np.random.default_rng(0).random((4, 3, 12, 12))
    back = read(npz(tmp_path, x=x, y=np.zeros(4, dtype=np.int32)), clean)
    assert back.x.dtype == torch.float32 and back.provenance["read"]["layout"] == "N×C×H×W"
    assert "float64" in back.provenance["read"]["pixels"]


def test_sources_outside_the_subset_are_counted_for_an_appended_poison(tmp_path, clean):
    x = np.zeros((3, 3, 12, 12), dtype=np.float32)
    back = read(npz(tmp_path, x=x, y=np.zeros(3, dtype=np.int64), indices=np.array([0, 1, 4])), clean)
    assert back.indices.tolist() == [0, -1, 2]  # odd places are not in the training set
    assert back.provenance["read"]["sources"] == {"given": 3, "inside": 2, "of": 200}


def test_a_replace_mode_poison_takes_its_sources_places(tmp_path, clean):
    from qlib.data import mix

    x = np.ones((2, 3, 12, 12), dtype=np.float32)
    back = read(npz(tmp_path, x=x, y=np.array([1, 2]), indices=np.array([10, 20]), mode=np.array("replace")), clean)
    mixed = mix(clean, back)
    assert len(mixed) == 200 and (mixed.x[5] == 1).all() and (mixed.x[10] == 1).all() and mixed.y[5] == 1


def test_bounds_none_is_exported_as_float32_and_never_rounded(tmp_path, clean):
    nu = made(clean)
    x = nu.x.clone()
    x[0, 0, 0, 0], x[1, 0, 0, 0] = -0.75, 1.3333
    odd = PoisonSet(x, nu.y, nu.indices, nu.eps_d, {**nu.provenance, "bounds": "none"})
    back = read(odd.save_npz(tmp_path / "odd.npz", clean), clean)
    assert torch.equal(back.x, x) and back.provenance["bounds"] == "none"
    rounded = as_uint8(back)
    assert rounded.provenance["pixels"]["values clipped"] == 2 and rounded.x.min() >= 0 and rounded.x.max() <= 1
    assert torch.equal(rounded.x, (rounded.x * 255).round() / 255)


def test_a_png_folder_with_labels_csv(tmp_path, clean):
    folder = tmp_path / "pngs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (12, 12, 3), dtype=np.uint8) for _ in range(3)]
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "index"])
        for i, a in enumerate(arrays):
            Image.fromarray(a).save(folder / f"{i}.png")
            w.writerow([f"{i}.png", i, 2 * i])
    (folder / "poison.json").write_text(json.dumps({"target_index": 7, "adversarial_class": 3}))
    back = read(folder, clean)
    assert torch.equal(back.x, torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2).astype(np.float32) / 255))
    assert back.indices.tolist() == [0, 1, 2] and back.y.tolist() == [0, 1, 2]
    assert back.provenance["target_index"] == 7 and back.provenance["adversarial_class"] == 3
    assert back.provenance["read"]["format"].startswith("folder of PNG")


GOOD_X = np.zeros((3, 3, 12, 12), dtype=np.float32)
GOOD_Y = np.array([0, 1, 2])
BAD = {  # name: (arrays, what the error must say)
    "no layout": (
        {"x": np.zeros((3, 12, 3, 12), np.float32), "y": GOOD_Y},
        r"matches no layout; allowed: N×C×H×W = N×3×12×12 or N×H×W×C",
    ),
    "three dimensions": ({"x": np.zeros((3, 12, 12), np.float32), "y": GOOD_Y}, r"x has shape \(3, 12, 12\); allowed"),
    "float outside [0, 1]": (
        {"x": GOOD_X + 2, "y": GOOD_Y},
        r"outside the declared range \[0, 1\].*save them as uint8",
    ),
    "NaN": ({"x": GOOD_X * np.nan, "y": GOOD_Y}, r"non-finite"),
    "int pixels": (
        {"x": GOOD_X.astype(np.int64), "y": GOOD_Y},
        r"x has dtype int64; allowed: uint8 \(0-255\) or float \(0-1\)",
    ),
    "label outside classes": ({"x": GOOD_X, "y": np.array([0, 4, 1])}, r"y holds label 4 .*allowed: 0 to 3"),
    "negative label": ({"x": GOOD_X, "y": np.array([0, -1, 1])}, r"y holds label -1"),
    "labels not one per image": ({"x": GOOD_X, "y": np.array([0, 1])}, r"allowed: 3 integer labels, one per image"),
    "index out of range": (
        {"x": GOOD_X, "y": GOOD_Y, "indices": np.array([0, 1, SPLIT])},
        rf"indices holds {SPLIT} .*allowed: 0 to {SPLIT - 1}",
    ),
    "index repeated": (
        {"x": GOOD_X, "y": GOOD_Y, "indices": np.array([4, 2, 4])},
        r"indices repeat: 4 appears 2 times",
    ),
    "replace without indices": (
        {"x": GOOD_X, "y": GOOD_Y, "mode": np.array("replace")},
        r"mode 'replace' needs indices",
    ),
    "replace outside the subset": (
        {"x": GOOD_X, "y": GOOD_Y, "indices": np.array([0, 1, 2]), "mode": np.array("replace")},
        r"1 of 3 source images lie outside.*--train-size all",
    ),
    "unknown mode": ({"x": GOOD_X, "y": GOOD_Y, "mode": np.array("insert")}, r"mode='insert'; allowed: add, replace"),
    "bounds none with uint8": (
        {"x": GOOD_X.astype(np.uint8), "y": GOOD_Y, "bounds": np.array("none")},
        r"bounds 'none'.*x is uint8",
    ),
    "unknown array": ({"x": GOOD_X, "y": GOOD_Y, "labels": GOOD_Y}, r"unknown array\(s\) \['labels'\]"),
    "target without class": (
        {"x": GOOD_X, "y": GOOD_Y, "target_index": np.array(3)},
        r"declares both target_index and adversarial_class",
    ),
    "target out of range": (
        {"x": GOOD_X, "y": GOOD_Y, "target_index": np.array(50), "adversarial_class": np.array(1)},
        r"target_index=50; allowed: 0 to 49",
    ),
    "no y": ({"x": GOOD_X}, r"no 'y'"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bad_file_is_refused_naming_the_problem(tmp_path, clean, case):
    arrays, message = BAD[case]
    with pytest.raises(PoisonFileError, match=message):
        read(npz(tmp_path, **arrays), clean)


def test_a_pickled_object_array_is_refused_and_never_unpickled(tmp_path, clean):
    path = npz(tmp_path, x=GOOD_X, y=np.array([{"a": 1}, 2, 3], dtype=object))
    with pytest.raises(PoisonFileError, match="no pickled objects"):
        read(path, clean)


def test_anything_else_is_refused(tmp_path, clean):
    (tmp_path / "p.txt").write_text("hello")
    with pytest.raises(PoisonFileError, match=r"not found or not a poison file; allowed: a .npz"):
        read(tmp_path / "p.txt", clean)
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(PoisonFileError, match="no labels.csv"):
        read(folder, clean)


def test_a_png_that_is_not_8_bit_l_or_rgb_is_refused(tmp_path, clean):
    folder = tmp_path / "pngs"
    folder.mkdir()
    Image.new("RGBA", (12, 12)).save(folder / "a.png")
    (folder / "labels.csv").write_text("file,label\na.png,0\n")
    with pytest.raises(PoisonFileError, match="PNG mode 'RGBA'; allowed: L .* or RGB"):
        read(folder, clean)


def test_a_qlib_poison_set_artifact_is_read_and_validated_against_its_training_set(tmp_path, clean):
    nu = made(clean, provenance={"attack": "toy", "params": {}, "seed": 0, "labels": "kept"})
    nu = PoisonSet(clean.x[nu.indices], nu.y, nu.indices, round(6 / 200, 4), nu.provenance)
    nu.save(tmp_path / "nu")
    back = read(tmp_path / "nu.safetensors", clean)
    assert torch.equal(back.x, nu.x) and back.provenance["read"]["format"] == "qlib PoisonSet"
    other = toy_dataset(n=200, seed=1, channels=3)
    other = Dataset(other.name, other.x, other.y.roll(1), other.num_classes, other.mean, other.std, clean.origin)
    with pytest.raises(PoisonFileError, match="indices refer to the training set it was made on"):
        read(tmp_path / "nu", other)
