"""Provenance: the commit a report was made from, dirty only when code (not the reports a run writes) changed."""

import subprocess

from qlib import provenance


def test_git_commit_ignores_the_reports_a_run_rewrites(tmp_path, monkeypatch):
    git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=tmp_path, check=True,
                                    capture_output=True, text=True).stdout.strip()
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
