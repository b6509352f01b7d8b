"""A report pair (executed notebook + HTML) is replaced only by a run that succeeded: a failed run keeps its notebook
under failed/, a killed one leaves nothing, and the index lists complete pairs only."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from papermill.exceptions import PapermillExecutionError

from qlib.report import SCRATCH, complete, execute, write_index

ROOT = Path(__file__).parents[1]


def tiny_notebook(folder: Path) -> Path:
    """A notebook with a parameters cell: it fails when ``fail`` is true and sleeps ``sleep`` seconds."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "qlib", "display_name": "Python (qlib)", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Tiny report"),
        nbformat.v4.new_code_cell("preset = 'smoke'\nfail: bool = False\nsleep: float = 0.0", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import time\ntime.sleep(sleep)\nif fail:\n    raise RuntimeError('boom')"),
        nbformat.v4.new_code_cell("from IPython.display import Markdown\nMarkdown(f'made with fail={fail}')",
                                  metadata={"tags": ["headline"]}),
    ]
    path = folder / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


def pair(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in (out / "tiny.ipynb", out / "tiny.html")}


def test_a_failed_run_keeps_the_last_good_pair_and_its_own_notebook_under_failed(tmp_path):
    nb, out = tiny_notebook(tmp_path), tmp_path / "reports"
    execute(nb, "smoke", out, progress=False)
    good = pair(out)
    assert complete(out / "tiny.ipynb")
    with pytest.raises(PapermillExecutionError, match="boom"):
        execute(nb, "smoke", out, {"fail": True}, progress=False)
    assert pair(out) == good
    failed = nbformat.read(out / "failed" / "tiny.ipynb", as_version=4)
    assert any(o.get("ename") == "RuntimeError" for c in failed.cells for o in c.get("outputs", []))
    assert not list(out.glob(f"{SCRATCH}*"))
    execute(nb, "smoke", out, progress=False)  # a good run again: the failed copy is stale
    assert not (out / "failed" / "tiny.ipynb").exists()


def test_the_index_lists_complete_pairs_only(tmp_path):
    nb, out = tiny_notebook(tmp_path), tmp_path / "reports"
    execute(nb, "smoke", out, progress=False)
    assert "made with fail=False" in write_index(out).read_text()
    html = (out / "tiny.html").read_bytes()
    execute(nb, "smoke", out, progress=False)
    (out / "tiny.html").write_bytes(html)  # a kill between the two moves: a new notebook beside the old HTML
    assert not complete(out / "tiny.ipynb")
    assert "tiny.html" not in write_index(out).read_text()
    (out / "tiny.html").unlink()
    assert not complete(out / "tiny.ipynb")


def test_a_killed_run_leaves_the_last_good_pair_and_its_scratch_is_removed_by_the_next(tmp_path):
    nb, out = tiny_notebook(tmp_path), tmp_path / "reports"
    execute(nb, "smoke", out, progress=False)
    good, index = pair(out), write_index(out).read_bytes()
    run = subprocess.Popen([sys.executable, "-m", "qlib", "run", str(nb), "--preset", "smoke", "-p", "sleep", "60",
                            "--out", str(out)], cwd=ROOT, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not list(out.glob(f"{SCRATCH}*/tiny.ipynb")) and time.time() < deadline:  # the kernel is running
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert pair(out) == good and (out / "index.html").read_bytes() == index
    assert list(out.glob(f"{SCRATCH}*")), "the killed run left no scratch folder"
    execute(nb, "smoke", out, progress=False)
    assert not list(out.glob(f"{SCRATCH}*"))
