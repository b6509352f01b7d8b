"""The `paper` preset's code path (CIFAR-10, ResNet-18, GC-Q through QAT) runs end to end on CPU, cut down by
overrides, on tiny CIFAR-format files written here (CIFAR-10 cannot be downloaded on these machines)."""

import re

import nbformat
from conftest import write_fake_cifar

from qlib.report import execute, headline

CUT_DOWN = {
    "train_size": 60,
    "test_size": 20,
    "epochs": 1,
    "batch_size": 30,
    "width": 0.25,
    "attacks": {"gc": {"epochs": 2}},
    "eps_d": 0.05,
}


def test_ablation_notebook_runs_on_the_paper_preset(data_dirs, tmp_path, monkeypatch):
    local, _ = data_dirs
    write_fake_cifar(local / "cifar-10-batches-py", per_batch=12)
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))
    html = execute("notebooks/03_ablation.ipynb", "paper", tmp_path / "out", CUT_DOWN, progress=False)
    nb = nbformat.read(html.with_suffix(".ipynb"), as_version=4)
    config = next(c for c in nb.cells if c.cell_type == "code" and "preset_table(cfg)" in c.source).outputs[0]["data"][
        "text/plain"
    ]
    assert re.search(r"dataset\s+cifar10\n", config) and re.search(r"model\s+resnet18\n", config)
    assert re.search(r"augment\s+True\n", config) and re.search(r"epochs\s+1\n", config)
    assert "Table 4 on cifar10 (resnet18, 1 seed(s), ε_d = 0.05)" in headline(nb)
