"""The README's "Use qlib as a library" block runs as written."""

import re
from pathlib import Path

import pytest

from qlib.data import SOURCES, _find

README = Path(__file__).parents[1] / "README.md"


def snippet() -> str:
    text = README.read_text()
    match = re.search(r"<!-- library snippet -->\n```python\n(.*?)```", text, re.S)
    assert match, "README lacks the library snippet"
    return match.group(1)


@pytest.mark.skipif(_find(SOURCES.get("fashion-mnist"), "train") is None, reason="Fashion-MNIST not installed")
def test_the_library_snippet_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path / "cache"))
    code = snippet()
    assert 10 <= len(code.strip().splitlines()) <= 14
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "drop (points)" in printed and "qat" in printed and "4W" in printed
    assert (tmp_path / "label_flip.npz").exists()
