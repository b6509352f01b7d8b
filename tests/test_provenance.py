"""Provenance: the commit a report was made from, dirty only when code (not the reports a run writes) changed, and
the machine every report and cache entry was computed on."""

import json
import subprocess

import torch
from conftest import toy_dataset
from torch import nn

from qlib import provenance
from qlib.attacks import run_attack
from qlib.cache import cached_artifact, cached_model, cached_result
from qlib.machine import machine
from qlib.presets import load_preset


def test_git_commit_ignores_the_reports_a_run_rewrites(tmp_path, monkeypatch):
    git = lambda *a: subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *a],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    git("init", "-q")
    (tmp_path / "reports").mkdir()
    (tmp_path / "code.py").write_text("a = 1\n")
    (tmp_path / "reports" / "r.html").write_text("old\n")
    git("add", "-A")
    git("commit", "-qm", "x")
    monkeypatch.setattr(provenance, "PROJECT_ROOT", tmp_path)
    head = git("rev-parse", "--short", "HEAD")
    assert provenance.git_commit() == head
    (tmp_path / "reports" / "r.html").write_text("new\n")
    assert provenance.git_commit() == head
    (tmp_path / "code.py").write_text("a = 2\n")
    assert provenance.git_commit() == head + "+dirty"


def test_git_commit_outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "PROJECT_ROOT", tmp_path)
    assert provenance.git_commit() == "unknown"


def test_machine_records_what_float_results_depend_on(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    record = machine("cpu")
    assert record["cpu capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["threads"] == torch.get_num_threads() and record["torch"] == torch.__version__
    assert record["device"] == "cpu" and record["cpu"] and record["ONEDNN_MAX_CPU_ISA"] == "AVX2"


def test_every_cache_entry_and_report_footer_records_the_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path))
    cached_model("t", {"k": 1}, lambda: nn.Linear(2, 2), lambda m: {})
    cached_result("r", {"k": 1}, lambda: {"acc": 0.5})
    cached_artifact(
        "poison",
        {"k": 1},
        lambda: run_attack("label_flip", toy_dataset(40), 0.1, 0),
        lambda nu, stem, meta: nu.save(stem, **meta),
        lambda *_: None,
    )
    manifests = [json.loads(p.read_text()) for p in tmp_path.rglob("*.json")]
    assert len(manifests) == 3
    for m in manifests:
        assert m.get("meta", m)["machine"] == machine()
    footer = provenance.provenance(load_preset("smoke"), 0.0)
    assert {"cpu", "cpu capability", "threads", "torch", "device"} <= set(footer)
