"""Bad input, case by case: each gets an error that names the bad value and what is allowed, and writes nothing.

A case is an optional set-up (a file to read, a cache entry to damage), an action that must fail, and the texts its
error must hold (the bad value, then what is allowed). Around the action nothing may change: not the scratch cache,
report and data folders, not the project's reports/ and cache/.
"""

import json
import math
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import toy_dataset
from torch import nn

from qlib import artifacts, cli, presets
from qlib.attacks import run_attack
from qlib.cache import cache_root, cached_model, cached_result
from qlib.data import DataNotFoundError, load
from qlib.quant import parse_scheme

ROOT = Path(__file__).parents[1]
NB00, NB01 = "notebooks/00_clean_baselines.ipynb", "notebooks/01_ptq.ipynb"
NB04, NB05 = "notebooks/04_unlearnable.ipynb", "notebooks/05_targeted.ipynb"
SMOKE = (ROOT / "qlib/presets/smoke.yaml").read_text()
CLEAN = toy_dataset(40)


@dataclass
class Case:
    action: Callable  # ctx -> the error message
    texts: list[str]  # what the message must hold
    setup: Callable | None = None  # ctx -> None, before the snapshot


@pytest.fixture
def ctx(tmp_path, monkeypatch, capsys):
    """Scratch cache, report and data folders (tmp), with the monkeypatch and capsys of the test."""
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("QLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("QLIB_SYSTEM_DATA", str(tmp_path / "system"))
    monkeypatch.chdir(ROOT)
    return SimpleNamespace(tmp=tmp_path, monkeypatch=monkeypatch, capsys=capsys)


def snapshot(*roots) -> dict:
    """Every file and folder under ``roots``, with a file's size and modification time."""
    return {
        p: (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else "folder"
        for r in roots
        if r.exists()
        for p in r.rglob("*")
    }


def run(ctx, *argv) -> str:
    """The message ``python -m qlib run NB ... --out <scratch>`` refuses with (in process): exit status 2."""
    return command(ctx, "run", *argv, "--out", str(ctx.tmp / "out"))


def command(ctx, *argv) -> str:
    """The message ``python -m qlib ARGV`` refuses with (in process): exit status 2."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(list(argv))
    assert exit_.value.code == 2, exit_.value.code
    return ctx.capsys.readouterr().err


def raised(action, error=ValueError) -> str:
    with pytest.raises(error) as e:
        action()
    return str(e.value)


def parameter_file(text):
    return lambda ctx: (ctx.tmp / "f.yaml").write_text(text)


def preset_file(text):
    """Set-up: a preset folder holding one preset file, ``bad.yaml``."""

    def setup(ctx):
        (ctx.tmp / "presets").mkdir()
        (ctx.tmp / "presets" / "bad.yaml").write_text(text)
        ctx.monkeypatch.setattr(presets, "PRESET_DIR", ctx.tmp / "presets")

    return setup


def damaged_entry(damage):
    """Set-up: a cached model entry (an nn.Linear), then ``damage(stem)``."""

    def setup(ctx):
        cached_model("t", {"k": 1}, lambda: nn.Linear(2, 2), lambda m: {})
        (manifest,) = (cache_root() / "t").glob("*.json")
        damage(manifest.with_suffix(""))

    return setup


def reload_entry(ctx) -> str:
    return raised(lambda: cached_model("t", {"k": 1}, lambda: nn.Linear(2, 2), lambda m: {}), artifacts.ArtifactError)


def edit_manifest(stem, **fields):
    manifest = artifacts.paths(stem)[1]
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), **fields}))


def drop_pickle(stem):
    """A pickle in place of the tensor file, with a manifest that vouches for it: still never unpickled."""
    tensor_path = artifacts.paths(stem)[0]
    tensor_path.write_bytes(pickle.dumps({"weight": torch.zeros(2, 2)}))
    edit_manifest(stem, sha256=artifacts._sha256(tensor_path))


def damaged_result(ctx):
    cached_result("accuracy", {"k": 1}, lambda: {"acc": 0.5})
    (path,) = (cache_root() / "accuracy").glob("*.json")
    path.write_text("{truncated")


def truncate(stem):
    tensor_path = artifacts.paths(stem)[0]
    tensor_path.write_bytes(tensor_path.read_bytes()[:20])


CASES = {
    # python -m qlib run: parameters are checked before a kernel starts
    "run: unknown parameter": Case(
        lambda c: run(c, NB00, "--preset", "smoke", "-p", "banana", "3"), ["'banana'", "valid: dataset, model"]
    ),
    "run: misspelt parameter": Case(
        lambda c: run(c, NB00, "--preset", "smoke", "-p", "epoch", "3"), ["'epoch'", "did you mean epochs", "valid:"]
    ),
    "run: negative epochs": Case(
        lambda c: run(c, NB00, "--preset", "smoke", "-p", "epochs", "-3"),
        ["epochs=-3", "allowed is a positive integer"],
    ),
    "run: epochs of the wrong type": Case(
        lambda c: run(c, NB00, "--preset", "smoke", "-p", "epochs", "abc"), ["epochs='abc'", "allowed is an integer"]
    ),
    "run: epochs true": Case(
        lambda c: run(c, NB00, "--preset", "smoke", "-p", "epochs", "true"), ["epochs=True", "allowed is an integer"]
    ),
    "run: repeated seeds": Case(
        lambda c: run(c, NB00, "--preset", "smoke", "-p", "seeds", "[0, 0]"), ["seeds=[0, 0]", "distinct integers"]
    ),
    "run: value not YAML": Case(
        lambda c: run(c, NB00, "--preset", "smoke", "-p", "seeds", "[0,"), ["'[0,'", "allowed: a YAML"]
    ),
    "run: budget above 1": Case(
        lambda c: run(c, NB01, "--preset", "smoke", "-p", "eps_d", "1.5"), ["eps_d=1.5", "(0, 1]"]
    ),
    "run: NaN budget": Case(
        lambda c: run(c, NB01, "--preset", "smoke", "-p", "eps_d", ".nan"), ["eps_d=nan", "(0, 1]"]
    ),
    "run: notebook's own budget list": Case(
        lambda c: run(c, NB01, "--preset", "smoke", "-p", "sweep_eps_d", "[0.1, 0]"),
        ["sweep_eps_d", "eps_d=0", "(0, 1]"],
    ),
    "run: notebook's own attack list": Case(
        lambda c: run(c, NB01, "--preset", "smoke", "-p", "sweep_attacks", "[gcc]"),
        ["'gcc'", "allowed: ar, badnets, blend, dc"],
    ),
    "run: another notebook's parameter": Case(
        lambda c: run(c, NB00, "--preset", "smoke", "-p", "sweep_eps_d", "[0.1]"), ["'sweep_eps_d'", "valid:"]
    ),
    "run: a preset field the notebook does not use": Case(
        lambda c: run(c, NB00, "--preset", "smoke", "-p", "eps_d", "0.1"),
        ["unknown parameter 'eps_d'", "00_clean_baselines.ipynb", "valid: dataset"],
    ),
    "run: unknown optimizer": Case(
        lambda c: run(c, NB01, "--preset", "smoke", "-p", "attacks", "{gc: {optimizer: sgd}}"),
        ["attacks.gc.optimizer='sgd'", "one of adam, gd"],
    ),
    "run: unknown attack": Case(
        lambda c: run(c, NB04, "--preset", "smoke", "-p", "attacks", "{xyz: {}}"),
        ["'xyz'", "valid: ar, badnets, blend, dc, em, gc, gradient_matching"],
    ),
    "run: unknown attack setting": Case(
        lambda c: run(c, NB05, "--preset", "smoke", "-p", "attacks", "{gradient_matching: {epsilon: 0.1}}"),
        ["'epsilon'", "valid:"],
    ),
    "run: attack setting of the wrong type": Case(
        lambda c: run(c, NB05, "--preset", "smoke", "-p", "attacks", "{gradient_matching: {steps: 2.5}}"),
        ["attacks.gradient_matching.steps=2.5", "allowed is an integer"],
    ),
    "run: attack settings that are not a mapping": Case(
        lambda c: run(c, NB04, "--preset", "smoke", "-p", "attacks", "{em: 5}"),
        ["attacks.em=5", "allowed is a mapping"],
    ),
    "run -f: a preset file of another preset": Case(
        lambda c: run(c, NB00, "--preset", "smoke", "-f", "qlib/presets/cpu.yaml"),
        ["preset='cpu'", "--preset ('smoke' now)"],
    ),
    "run: unknown device": Case(
        lambda c: run(c, NB00, "--preset", "smoke", "-p", "device", "tpu"),
        ["device='tpu'", "'auto', 'cpu' or 'cuda[:N]'"],
    ),
    "run: unknown preset": Case(
        lambda c: run(c, NB00, "--preset", "gpu"), ["'gpu'", "valid: cifar-cpu, cpu, paper, smoke"]
    ),
    "run: preset as a parameter": Case(
        lambda c: run(c, NB00, "--preset", "smoke", "-p", "preset", "cpu"), ["preset='cpu'", "--preset"]
    ),
    "run: missing notebook": Case(
        lambda c: run(c, "notebooks/99_nope.ipynb", "--preset", "smoke"), ["99_nope.ipynb", "00_clean_baselines.ipynb"]
    ),
    "run -f: unknown name in the file": Case(
        lambda c: run(c, NB00, "--preset", "smoke", "-f", str(c.tmp / "f.yaml")),
        ["'widht'", "did you mean width"],
        parameter_file("epochs: 2\nwidht: 0.5\n"),
    ),
    "run -f: file is not a mapping": Case(
        lambda c: run(c, NB00, "--preset", "smoke", "-f", str(c.tmp / "f.yaml")),
        ["f.yaml", "holds list", "allowed: a YAML mapping"],
        parameter_file("- 1\n- 2\n"),
    ),
    "run -f: missing file": Case(
        lambda c: run(c, NB00, "--preset", "smoke", "-f", str(c.tmp / "none.yaml")), ["none.yaml", "No such file"]
    ),
    # python -m qlib train / data
    "train: unknown preset": Case(
        lambda c: command(c, "train", "--preset", "nope"), ["'nope'", "valid: cifar-cpu, cpu, paper, smoke"]
    ),
    "train: zero epochs": Case(
        lambda c: command(c, "train", "--preset", "smoke", "--epochs", "0"), ["epochs=0", "positive integer"]
    ),
    "train: repeated seeds": Case(
        lambda c: command(c, "train", "--preset", "smoke", "--seeds", "1", "1"), ["seeds=[1, 1]", "distinct"]
    ),
    "data: unknown dataset": Case(lambda c: command(c, "data", "mnist"), ["'mnist'", "cifar10, fashion-mnist"]),
    "data: missing data folder": Case(
        lambda c: raised(lambda: load("cifar10", "train", download=False), DataNotFoundError),
        ["'cifar10'", "cifar-10-batches-py", "download disabled"],
    ),
    # preset files
    "preset file: unknown field": Case(
        lambda c: raised(lambda: presets.load_preset("bad")),
        ["'widht'", "did you mean width"],
        preset_file(SMOKE.replace("preset: smoke", "preset: bad") + "widht: 1\n"),
    ),
    "preset file: names another preset": Case(
        lambda c: raised(lambda: presets.load_preset("bad")), ["bad.yaml", "preset: bad", "'smoke'"], preset_file(SMOKE)
    ),
    "preset file: field of the wrong type": Case(
        lambda c: raised(lambda: presets.load_preset("bad")),
        ["epochs='one'", "allowed is an integer"],
        preset_file(SMOKE.replace("preset: smoke", "preset: bad").replace("epochs: 1", "epochs: one")),
    ),
    # schemes
    "scheme: unknown task": Case(lambda c: raised(lambda: parse_scheme("3X")), ["'3X'", "valid: fp, 1W"]),
    "scheme: unknown method": Case(
        lambda c: raised(lambda: parse_scheme("1W1A", "xnor")), ["'xnor'", "valid: int, lsq, bnn"]
    ),
    "scheme: int for a 1-bit task": Case(lambda c: raised(lambda: parse_scheme("1W", "int")), ["'1W'", "not 'int'"]),
    # attacks, budgets and attack parameters
    "attack: unknown name": Case(
        lambda c: raised(lambda: run_attack("gcc", CLEAN, 0.1, 0)),
        ["'gcc'", "did you mean gc", "valid: ar, badnets, blend, dc"],
    ),
    "budget: zero": Case(lambda c: raised(lambda: run_attack("label_flip", CLEAN, 0, 0)), ["eps_d=0", "(0, 1]"]),
    "budget: negative": Case(
        lambda c: raised(lambda: run_attack("label_flip", CLEAN, -0.1, 0)), ["eps_d=-0.1", "(0, 1]"]
    ),
    "budget: above one": Case(
        lambda c: raised(lambda: run_attack("label_flip", CLEAN, 1.5, 0)), ["eps_d=1.5", "(0, 1]"]
    ),
    "budget: NaN": Case(
        lambda c: raised(lambda: run_attack("label_flip", CLEAN, math.nan, 0)), ["eps_d=nan", "(0, 1]"]
    ),
    "budget: a string": Case(
        lambda c: raised(lambda: run_attack("label_flip", CLEAN, "0.1", 0)), ["eps_d='0.1'", "(0, 1]"]
    ),
    "budget: true": Case(lambda c: raised(lambda: run_attack("label_flip", CLEAN, True, 0)), ["eps_d=True", "(0, 1]"]),
    "attack parameter: GC optimizer": Case(
        lambda c: raised(lambda: run_attack("gc", CLEAN, 0.1, 0, target=nn.Linear(1, 1), optimizer="sgd")),
        ["'sgd'", "valid: adam, gd"],
    ),
    "attack parameter: adversarial class": Case(
        lambda c: raised(
            lambda: run_attack(
                "gradient_matching",
                CLEAN,
                0.1,
                0,
                model=nn.Linear(1, 1),
                target_image=CLEAN.x[0],
                target_index=0,
                adversarial_class=7,
            )
        ),
        ["adversarial_class=7", "(0-3)"],
    ),
    # the cache
    "cache: truncated tensor file": Case(
        reload_entry,
        [".safetensors is corrupted: sha256", "does not match the manifest's", "delete"],
        damaged_entry(truncate),
    ),
    "cache: manifest hash does not match": Case(
        reload_entry,
        ["does not match the manifest's 000000000000", "delete"],
        damaged_entry(lambda s: edit_manifest(s, sha256="0" * 64)),
    ),
    "cache: manifest is not JSON": Case(
        reload_entry,
        [".json is corrupted", "a manifest is JSON", "delete"],
        damaged_entry(lambda s: artifacts.paths(s)[1].write_text("{not json")),
    ),
    "cache: a pickle where the tensors belong": Case(
        reload_entry, ["cannot be read as safetensors", "never pickles", "delete"], damaged_entry(drop_pickle)
    ),
    "cache: a result that is not JSON": Case(
        lambda c: raised(lambda: cached_result("accuracy", {"k": 1}, lambda: {"acc": 0.5}), artifacts.ArtifactError),
        [".json is corrupted", "delete it to recompute it"],
        damaged_result,
    ),
}


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_named_and_writes_nothing(name, ctx):
    case = CASES[name]
    if case.setup:
        case.setup(ctx)
    watched = (ctx.tmp, ROOT / "reports", ROOT / "cache")
    before = snapshot(*watched)
    message = case.action(ctx)
    for text in case.texts:
        assert text in message, f"{name}: {text!r} not in {message!r}"
    after = snapshot(*watched)
    assert after == before, f"{name} wrote or changed {sorted(map(str, set(after) ^ set(before)))}"


def test_a_refusal_is_one_line_with_status_2_and_no_kernel(tmp_path):
    """The real command, in its own process: one line on stderr, exit status 2, no output folder."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "qlib",
            "run",
            NB00,
            "--preset",
            "smoke",
            "-p",
            "banana",
            "3",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("qlib: error: unknown parameter 'banana'"), out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "out").exists()
