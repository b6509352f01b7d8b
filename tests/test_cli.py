import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from inprocess import run_qlib

from qlib.data import SOURCES, _find

ROOT = Path(__file__).parents[1]


def qlib(*args):
    return subprocess.run([sys.executable, "-m", "qlib", *args], capture_output=True, text=True, cwd=ROOT)


def test_unknown_preset_is_a_clear_error():
    out = run_qlib("train", "--preset", "nope")
    assert out.returncode != 0 and "unknown preset 'nope'; valid: cifar-cpu, cpu, paper, smoke" in out.stderr


@pytest.mark.skipif(_find(SOURCES.get("fashion-mnist"), "train") is None, reason="Fashion-MNIST not installed")
def test_run_executes_renders_and_indexes(tmp_path):
    out = qlib(
        "run", "notebooks/00_clean_baselines.ipynb", "--preset", "smoke", "-p", "epochs", "2", "--out", str(tmp_path)
    )
    assert out.returncode == 0, out.stderr[-2000:]
    executed = nbformat.read(tmp_path / "00_clean_baselines.ipynb", as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "epochs = 2" in injected.source and 'preset = "smoke"' in injected.source
    html = (tmp_path / "00_clean_baselines.html").read_text()
    assert "Clean FP accuracy on fashion-mnist" in html
    index = (tmp_path / "index.html").read_text()
    assert 'href="00_clean_baselines.html"' in index and "Clean FP accuracy on fashion-mnist" in index


def test_a_preset_file_of_the_chosen_preset_is_a_parameter_file():
    """``-f qlib/presets/smoke.yaml --preset smoke``, as papermill users pass a preset file: it names its own
    preset, which is the chosen one, and every other key is a parameter of the notebook."""
    from qlib.presets import read_yaml
    from qlib.report import check_parameters

    check_parameters(ROOT / "notebooks/01_ptq.ipynb", "smoke", read_yaml("smoke") | {"sweep_eps_d": [0.1]})
