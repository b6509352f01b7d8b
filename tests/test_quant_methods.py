"""The quantization-method registry: the built-ins through it with their cache keys unchanged, a method registered in
one process, and one installed from outside the package (the example of docs/guide/quantizers.md, found through
the ``qlib.quantizers`` entry-point group) trained, evaluated by ``python -m qlib evaluate`` and rendered in a notebook
with no edit to qlib; schemes a method did not declare are refused before anything is computed."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import toy_dataset
from torch import nn

from qlib import cells
from qlib.data import SOURCES, _find
from qlib.models import create_model
from qlib.presets import load_preset
from qlib.quant import METHODS, parse_scheme, prepare_qat, ptq, register, scheme_named
from qlib.quant.methods import names

ROOT = Path(__file__).parents[1]
FASHION = _find(SOURCES.get("fashion-mnist"), "train") is not None

# Cell ids under the cpu preset, seed 0, made before the registry existed (d1eaf6a, where a scheme's key was
# dataclasses.asdict): the clean model (FP, or QAT under the scheme) and its accuracy (FP, or PTQ of the FP model).
# A changed id would orphan every cached model and committed number of that scheme.
IDS = {
    ("fp", None): ("trained/5ae6b30da187dc81", "accuracy/10f23ea25b7e77bb"),
    ("4W", None): ("trained/e8cd1a95e904f94c", "accuracy/b0b9518a2bbea796"),
    ("8W8A", None): ("trained/1f19f054082b33c8", "accuracy/556a51e063c1cfed"),
    ("4W", "lsq"): ("trained/b2922f128c31eaf0", "accuracy/e423c917eb8b5f94"),
    ("1W", "bnn"): ("trained/81343875e2554956", "accuracy/cbd62072c0c13e05"),
    ("1W1A", "bnn++"): ("trained/aa5ab064c277612b", "accuracy/fb4a0829413a7442"),
    ("1W1A", "adabin"): ("trained/3e93e42a6c724330", "accuracy/e7aaec0e0a9a2dbe"),
}


def _doc_example() -> tuple[str, str]:
    """The Python module and the pyproject entry-point table of docs/guide/quantizers.md's example."""
    text = (ROOT / "docs/guide/quantizers.md").read_text()
    section = text[text.index("## Bring your own quantizer") :]
    python = re.search(r"```python\n(.*?)```", section, re.S)[1]
    toml = re.search(r"```toml\n(.*?)```", section, re.S)[1]
    return python, toml


def _install(tmp_path: Path) -> Path:
    """The example as an installed distribution on ``tmp_path``: its module and a ``.dist-info`` whose
    entry_points.txt holds the pyproject's table, as pip writes it."""
    python, toml = _doc_example()
    tmp_path.mkdir()
    group = re.search(r'\[project\.entry-points\."(.+?)"\]', toml)[1]
    entry = re.search(r"^(\w+) = \"(.+?)\"$", toml, re.M)
    (tmp_path / "ternary_quant.py").write_text(python)
    info = tmp_path / "ternary_quant-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ternary-quant\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry[1]} = {entry[2]}\n")
    return tmp_path


@pytest.fixture
def registered(monkeypatch):
    """Registrations made in the test are undone after it."""
    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))
    monkeypatch.setattr(METHODS, "_meta", dict(METHODS._meta))


def test_the_built_ins_are_registered_in_the_papers_order_with_what_they_declare():
    assert names()[:5] == ["int", "lsq", "bnn", "bnn++", "adabin"]
    assert {"torchao", "fp8"} <= set(names())
    assert [n for n in names() if METHODS.get(n).one_bit] == ["bnn", "bnn++", "adabin"]
    assert [n for n in names() if METHODS.get(n).learned] == ["lsq", "adabin"]
    assert METHODS.get("torchao").group_sizes and not METHODS.get("int").group_sizes


@pytest.mark.parametrize("task, method", list(IDS))
def test_built_in_cache_keys_are_those_made_before_the_registry(task, method):
    """Every field of the scheme, as ``dataclasses.asdict`` gave it, and no ``group_size``: the cell ids (hashes of
    the keys) of every built-in scheme stay what they were, so no cached model or committed number changes."""
    s = parse_scheme(task, method)
    cfg = load_preset("cpu")
    regime = "fp" if s.is_fp else "ptq"
    assert (cells.trained(cfg, 0, s).id, cells.accuracy(cfg, 0, regime, s).id) == IDS[(task, method)]
    key = s.key()
    assert "group_size" not in key and list(key) == [
        "task",
        "method",
        "w_bits",
        "a_bits",
        "per_channel",
        "scale_1bit",
        "keep_fp",
        "beta",
        "act_momentum",
    ]
    assert cells.trained(cfg, 0, s).key["scheme"] == cells.quantized(cfg, s).key()


def test_a_grouped_scheme_keys_its_group_and_names_it():
    s = parse_scheme("4W", "torchao", group_size=32)
    assert s.key()["group_size"] == 32 and s.name == "4W torchao-g32"
    assert scheme_named("4W:torchao-g32") == s and scheme_named("4W8A:torchao-g32").a_bits == 8


@pytest.mark.parametrize(
    "name, message",
    [
        ("4W:ternary9", "unknown method 'ternary9'; valid: int, lsq, bnn, bnn++, adabin"),
        ("4W4A:torchao-g32", "method 'torchao' supports weights of 2-8 bits and activations of 8 bits or none"),
        ("12W:torchao", "method 'torchao' supports weights of 2-8 bits"),
        ("4W:torchao-g24", "group_size=24 for method 'torchao': allowed 16, 32, 64, 128, 256"),
        ("4W:int-g32", "group_size=32 for method 'int': allowed none"),
        ("4W8A:fp8", "method 'fp8' supports weights of 8 bits"),
        ("1W:torchao", "task '1W' has a 1-bit part: use method 'bnn', 'bnn++' or 'adabin', not 'torchao'"),
    ],
)
def test_schemes_a_method_did_not_declare_are_refused_in_one_line(name, message):
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        scheme_named(name)
    assert "\n" not in str(e.value) and "allowed: TASK, TASK:METHOD or TASK:METHOD-gN" in str(e.value)


def test_torchao_missing_is_refused_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)  # what importlib sees where torchao is not installed
    with pytest.raises(
        ValueError, match=re.escape("method 'torchao' needs torchao, which is not installed: pip install -e '.[quant]'")
    ):
        scheme_named("4W:torchao-g32")


def test_a_method_registered_in_process_trains_by_qat_and_quantizes_by_ptq(registered):
    namespace = {}
    exec(_doc_example()[0], namespace)
    register("ternary", namespace["TERNARY"])
    with pytest.raises(ValueError, match="already registered"):
        register("ternary", namespace["TERNARY"])
    with pytest.raises(TypeError, match="must be a qlib.quant.Method"):
        register("other", lambda scheme, layer: nn.Identity())
    s = scheme_named("2W:ternary")
    assert (s.method, s.name) == ("ternary", "2W ternary")
    d = toy_dataset(n=64, size=12)
    model = create_model("cnn", d, width=0.25, seed=0)
    q = ptq(model, s)
    w = q[5].quantized_weight()  # the second conv, quantized (the first and last layers stay FP)
    values = torch.unique(w)
    assert len(values) == 3 and values[1] == 0 and values[0] == -values[2]  # {−α, 0, α}
    qat = prepare_qat(model, s)
    qat(d.x[:8]).sum().backward()
    assert qat[5].weight.grad.abs().sum() > 0


@pytest.mark.skipif(not FASHION, reason="Fashion-MNIST not installed")
def test_a_method_installed_from_outside_runs_through_evaluate_and_a_notebook(tmp_path):
    """The doc's example, installed as a distribution with its entry point, in fresh processes: ``qlib evaluate``
    retrains on a label-flip poison file under 2W ternary (PTQ and QAT), and notebook 07 renders with it."""
    site = _install(tmp_path / "site")
    cfg = load_preset("smoke")
    train, _ = cells.load_data(cfg)
    flipped = (train.y[:50] + 1) % 10
    np.savez(
        tmp_path / "flip.npz",
        x=train.x[:50].numpy(),
        y=flipped.numpy(),
        indices=train.origin[:50].numpy(),
        mode="replace",
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "QLIB_CACHE": str(tmp_path / "cache"),
    }
    run = lambda *args: subprocess.run(
        [sys.executable, "-m", "qlib", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    out = run(
        "evaluate", str(tmp_path / "flip.npz"), "--preset", "smoke", "--schemes", "fp", "2W:ternary",
        "--regimes", "fp", "ptq", "qat", "--out", str(tmp_path / "rows.csv"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    rows = (tmp_path / "rows.csv").read_text()
    assert rows.count("2W ternary") == 2 and "ptq" in rows and "qat" in rows
    out = run(
        "run", "notebooks/07_evaluate_your_poison.ipynb", "--preset", "smoke", "--out", str(tmp_path / "reports"),
        "-p", "poison_path", str(tmp_path / "flip.npz"), "-p", "schemes", '["fp", "2W:ternary"]',
        "-p", "regimes", '["fp", "qat"]',
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    html = (tmp_path / "reports" / "07_evaluate_your_poison.html").read_text()
    assert "2W ternary" in html
    out = run("evaluate", str(tmp_path / "flip.npz"), "--preset", "smoke", "--schemes", "2W:ternery")
    assert out.returncode == 2 and "unknown method 'ternery'" in out.stderr
    assert "valid: int, lsq, bnn, bnn++, adabin, fp8, ternary, torchao" in out.stderr
