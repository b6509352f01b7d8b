"""Backdoor triggers (``qlib.triggers``): x' = (1 − m)·x + m·t, the attack success rate, triggers carried by poison
files and artifacts, and every bad trigger refused in one line before anything is written."""

import json

import numpy as np
import pytest
import torch
from conftest import toy_dataset
from inprocess import run_qlib
from PIL import Image

from qlib.attacks import run_attack
from qlib.data import Dataset
from qlib.poison import PoisonFileError, PoisonSet, load_poison, validate
from qlib.triggers import Trigger, TriggerError, blend, check, patch, success, wanet

SPLIT = 400


@pytest.fixture
def clean() -> Dataset:
    t = toy_dataset(n=200, channels=3)
    return Dataset(t.name, t.x, t.y, t.num_classes, t.mean, t.std, torch.arange(0, SPLIT, 2))


def test_a_triggered_image_is_the_masked_mix_of_image_and_pattern():
    x = torch.rand(5, 3, 12, 12)
    t = patch((3, 12, 12), target_class=1, size=3)
    out = t.apply(x)
    inside = t.mask[0] > 0
    assert int(inside.sum()) == 9 and torch.equal(out[:, :, inside], t.pattern[:, inside].expand(5, -1, -1))
    assert torch.equal(out[:, :, ~inside], x[:, :, ~inside])  # the rest untouched, bit for bit
    b = blend((3, 12, 12), target_class=0, alpha=0.25, seed=3)
    assert torch.allclose(b.apply(x), 0.75 * x + 0.25 * b.pattern)
    assert b.describe()["alpha"] == 0.25 and t.describe()["pixels"] == 9


def test_the_success_rate_counts_only_images_outside_the_target_class():
    labels = torch.tensor([0, 0, 1, 2, 3, 1])
    predictions = torch.tensor([0, 1, 0, 0, 3, 2])
    assert success(predictions, labels, Trigger(0)) == {"asr": 0.5, "hits": 2, "n": 4}
    assert success(predictions, labels, Trigger(0, source_class=1)) == {"asr": 0.5, "hits": 1, "n": 2}


def test_wanet_warps_smoothly_and_is_registered_by_name():
    x = torch.rand(4, 1, 28, 28)
    t = Trigger(0, warp="wanet", params={"k": 4, "strength": 0.5, "seed": 1})
    out = t.apply(x)
    assert out.shape == x.shape and 0 < (out - x).abs().mean() < 0.2
    assert torch.equal(out, wanet(x, k=4, strength=0.5, seed=1))
    with pytest.raises(ValueError, match="unknown warping trigger 'twirl'"):
        check(Trigger(0, warp="twirl"), (1, 28, 28), 10)


@pytest.mark.parametrize("attack", ["badnets", "blend"])
def test_badnets_and_blend_relabel_triggered_images_of_other_classes_in_place(clean, attack):
    nu = run_attack(attack, clean, 0.1, seed=2, target_class=3)
    assert len(nu) == 20 and nu.provenance["mode"] == "replace" and (nu.y == 3).all()
    assert (clean.y[nu.indices] != 3).all()  # all-to-one: no image of the target class is relabelled
    assert torch.equal(nu.x, nu.trigger.apply(clean.x[nu.indices]))
    again = run_attack(attack, clean, 0.1, seed=2, target_class=3)
    assert torch.equal(again.x, nu.x) and torch.equal(again.indices, nu.indices)
    wrong = PoisonSet(nu.x, clean.y[nu.indices], nu.indices, nu.eps_d, nu.provenance, nu.trigger)
    with pytest.raises(ValueError, match="do not follow the 'target' rule"):
        validate(wrong, clean)


def test_a_trigger_survives_the_artifact_and_the_npz_round_trip(tmp_path, clean):
    nu = run_attack("badnets", clean, 0.05, seed=0, target_class=1)
    nu.save(tmp_path / "nu")
    back = PoisonSet.load(tmp_path / "nu")
    assert torch.equal(back.trigger.pattern, nu.trigger.pattern) and back.trigger.target_class == 1
    assert back.digest() == nu.digest() != PoisonSet(nu.x, nu.y, nu.indices, nu.eps_d, nu.provenance).digest()
    path = nu.save_npz(tmp_path / "nu.npz", clean)
    read = load_poison(path, clean, split_size=SPLIT, test_size=50)
    assert torch.equal(read.trigger.mask, nu.trigger.mask) and torch.equal(read.x, nu.x)
    assert read.provenance["trigger"]["kind"] == "patch"
    b = run_attack("blend", clean, 0.05, seed=0, target_class=1, alpha=0.1)
    read = load_poison(b.save_npz(tmp_path / "b.npz", clean), clean, split_size=SPLIT, test_size=50)
    assert read.trigger.blend == pytest.approx(0.1) and torch.equal(read.trigger.pattern, b.trigger.pattern)


def test_a_png_folder_carries_its_trigger_as_trigger_png_and_mask_png(tmp_path, clean):
    folder = tmp_path / "png"
    folder.mkdir()
    rows = []
    for i in range(4):
        Image.fromarray((clean.x[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(folder / f"{i}.png")
        rows.append(f"{i}.png,2,{2 * i}")
    (folder / "labels.csv").write_text("file,label,index\n" + "\n".join(rows) + "\n")
    pattern = np.zeros((12, 12, 3), np.uint8)
    pattern[-3:, -3:] = 255
    mask = np.zeros((12, 12), np.uint8)
    mask[-3:, -3:] = 255
    Image.fromarray(pattern).save(folder / "trigger.png")
    Image.fromarray(mask).save(folder / "mask.png")
    (folder / "poison.json").write_text(json.dumps({"mode": "replace", "target_class": 2}))
    nu = load_poison(folder, clean, split_size=SPLIT, test_size=50)
    assert nu.trigger.target_class == 2 and nu.trigger.mask.shape == (1, 12, 12) and int(nu.trigger.mask.sum()) == 9


# A good backdoor file's fields (12×12 RGB toy images), and one defect per case: each refused in one line.
GOOD = {"trigger": np.zeros((12, 12, 3), np.uint8), "trigger_mask": np.eye(12, dtype=np.float32), "target_class": 1}
BAD = {
    "pattern of the wrong shape": ({"trigger": np.zeros((5, 5, 3), np.uint8)}, "trigger has shape 5×5×3"),
    "pattern above 1": ({"trigger": np.full((12, 12, 3), 1.5, np.float32)}, r"trigger holds values in \[1.5, 1.5\]"),
    "pattern with NaN": ({"trigger": np.full((12, 12, 3), np.nan, np.float32)}, "trigger holds 432 non-finite"),
    "mask above 1": ({"trigger_mask": np.full((12, 12), 2.0, np.float32)}, r"trigger_mask holds values in \[2, 2\]"),
    "mask of the wrong shape": ({"trigger_mask": np.ones((12, 11), np.float32)}, "trigger_mask has shape 12×11"),
    "mask below 0": ({"trigger_mask": np.full((12, 12), -0.5, np.float32)}, r"trigger_mask holds values in \[-0.5"),
    "mask zero everywhere": ({"trigger_mask": np.zeros((12, 12), np.float32)}, "changes no pixel"),
    "target class outside": ({"target_class": 4}, "target_class=4; allowed: 0 to 3"),
    "mask without a pattern": ({"trigger": None}, "trigger_mask, target_class without a pattern"),
    "pattern without a mask": ({"trigger_mask": None}, "exactly one of trigger_mask .* neither"),
    "mask and blend": ({"blend": np.array(0.2)}, "exactly one of trigger_mask .* both"),
    "no target class": ({"target_class": None}, "a trigger without target_class"),
    "blend above 1": ({"trigger_mask": None, "blend": np.array(1.5)}, r"blend=1.5; allowed: a number in \(0, 1\]"),
    "pattern of text": ({"trigger": np.array(["a"])}, "trigger has dtype <U1"),
}


def bad_file(tmp_path, clean, change: dict):
    fields = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    x = (clean.x[:4].permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    path = tmp_path / "bad.npz"
    np.savez(path, x=x, y=np.ones(4, np.int64), indices=np.arange(0, 8, 2), mode=np.array("replace"), **fields)
    return path


def test_the_good_file_of_the_refusal_cases_is_read(tmp_path, clean):
    nu = load_poison(bad_file(tmp_path, clean, {}), clean, split_size=SPLIT, test_size=50)
    assert nu.trigger.target_class == 1 and int((nu.trigger.mask > 0).sum()) == 12


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bad_trigger_is_refused_in_one_line(tmp_path, clean, case):
    change, message = BAD[case]
    with pytest.raises(PoisonFileError, match=message) as e:
        load_poison(bad_file(tmp_path, clean, change), clean, split_size=SPLIT, test_size=50)
    assert "\n" not in str(e.value)


def test_a_bad_trigger_stops_qlib_evaluate_before_anything_is_written(tmp_path):
    from qlib.cells import load_data
    from qlib.presets import load_preset

    train, _ = load_data(load_preset("smoke"))
    x = (train.x[:50].permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    path = tmp_path / "bad.npz"
    np.savez(
        path,
        x=x,
        y=np.zeros(50, np.int64),
        indices=train.origin[:50].numpy(),
        mode=np.array("replace"),
        trigger=np.zeros((28, 28), np.uint8),
        trigger_mask=np.ones((28, 28), np.uint8) * 255,
        target_class=np.array(10),
    )
    out = run_qlib("evaluate", str(path), "--preset", "smoke", "--out", str(tmp_path / "out.csv"),
                   env={"QLIB_CACHE": str(tmp_path / "cache")})  # fmt: skip
    assert out.returncode == 2 and "target_class=10; allowed: 0 to 9" in out.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out.csv").exists()


def test_check_refuses_a_trigger_built_in_code_too():
    with pytest.raises(TriggerError, match="trigger has shape 1×12×12; allowed: 3×12×12"):
        check(patch((1, 12, 12), 0), (3, 12, 12), 4)
