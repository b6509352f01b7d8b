"""A report pair (executed notebook + HTML) is replaced only by a run that succeeded: a failed run keeps its notebook
under failed/, a killed one leaves nothing, and the index lists complete pairs only."""

import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pandas as pd
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
        nbformat.v4.new_code_cell(
            "preset = 'smoke'\nfail: bool = False\nsleep: float = 0.0", metadata={"tags": ["parameters"]}
        ),
        nbformat.v4.new_code_cell("import time\ntime.sleep(sleep)\nif fail:\n    raise RuntimeError('boom')"),
        nbformat.v4.new_code_cell(
            "from IPython.display import Markdown\nMarkdown(f'made with fail={fail}')", metadata={"tags": ["headline"]}
        ),
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
    run = subprocess.Popen(
        [sys.executable, "-m", "qlib", "run", str(nb), "--preset", "smoke", "-p", "sleep", "60", "--out", str(out)],
        cwd=ROOT,
        start_new_session=True,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while not list(out.glob(f"{SCRATCH}*/tiny.ipynb")) and time.time() < deadline:  # the kernel is running
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert pair(out) == good and (out / "index.html").read_bytes() == index
    assert list(out.glob(f"{SCRATCH}*")), "the killed run left no scratch folder"
    execute(nb, "smoke", out, progress=False)
    assert not list(out.glob(f"{SCRATCH}*"))


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [v for k, v in attrs if k in ("href", "src") and v]


def broken_links(folder: Path) -> list[str]:
    """Every relative link and image of ``folder``'s index and of each page it links that does not resolve."""
    broken, pages, seen = [], [folder / "index.html"], set()
    while pages:
        page = pages.pop()
        if page in seen:
            continue
        seen.add(page)
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8"))
        for link in parser.links:
            if link.startswith(("http://", "https://", "#", "data:", "mailto:", "javascript:")):
                continue
            target = (page.parent / unquote(link.split("#")[0])).resolve()
            if not target.exists():
                broken.append(f"{page.name}: {link}")
            elif target.suffix == ".html":
                pages.append(target)
    return broken


class _Table(HTMLParser):
    """The first table of a page, as lists of cell texts per row."""

    def __init__(self):
        super().__init__()
        self.rows, self.depth, self.cell = [], 0, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.depth += 1
        elif tag == "tr" and self.depth == 1:
            self.rows.append([])
        elif tag in ("td", "th") and self.depth == 1:
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self.depth = -1  # only the first table
        elif tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def scoreboard_table(page: str) -> pd.DataFrame:
    parser = _Table()
    parser.feed(page)
    header, *body = parser.rows
    return pd.DataFrame(body, columns=header).set_index("id")


PRIMARY = [
    {
        "id": "1a",
        "claim": 1,
        "comparison": "gc in QAT 1W bnn above gc in FP",
        "δ": 1.0,
        "pilot sd": 0.5,
        "seeds for power": 6,
        "looks": 1,
        "seeds": 5,
        "effect": 3.2,
        "low": 1.1,
        "high": 5.3,
        "verdict": "holds",
    },
    {
        "id": "3a",
        "claim": 3,
        "comparison": "gc in QAT 4W4A above gc in QAT 4W",
        "δ": 1.0,
        "pilot sd": 0.2,
        "seeds for power": 4,
        "looks": 2,
        "seeds": 10,
        "effect": 0.1,
        "low": -0.4,
        "high": 0.6,
        "verdict": "negligible",
    },
    {
        "id": "4a",
        "claim": 4,
        "comparison": "gc in QAT 1W bnn above gc_q in QAT 1W bnn",
        "δ": 1.0,
        "pilot sd": 3.0,
        "seeds for power": None,
        "looks": 4,
        "seeds": 20,
        "effect": 0.9,
        "low": -1.5,
        "high": 3.3,
        "verdict": "undecided",
    },
]


def report_with_figure_and_claims(folder: Path) -> Path:
    """A notebook with a main figure, an exploratory claims table, the primary verdicts, and a headline."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "qlib", "display_name": "Python (qlib)", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Figure report"),
        nbformat.v4.new_code_cell("preset = 'smoke'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0]);", metadata={"tags": ["main-figure"]}
        ),
        nbformat.v4.new_code_cell(
            "import pandas as pd\nfrom qlib.scoreboard import show_claims, show_verdicts\n"
            "show_claims(pd.DataFrame({'family': ['PTQ more robust than FP'], 'claim': ['a'], 'our run': ['holds'], "
            "'paper': ['holds']}))\n"
            f"records = {PRIMARY!r}\nshow_verdicts(pd.DataFrame(records), records)"
        ),
        nbformat.v4.new_code_cell(
            "from IPython.display import Markdown\nMarkdown('the computed headline')", metadata={"tags": ["headline"]}
        ),
    ]
    path = folder / "figs.ipynb"
    nbformat.write(nb, path)
    return path


def test_the_index_opens_with_the_primary_scoreboard_and_shows_thumbnails_and_code_free_reports(tmp_path):
    out = tmp_path / "reports"
    execute(report_with_figure_and_claims(tmp_path), "smoke", out, progress=False)
    execute(tiny_notebook(tmp_path), "smoke", out, progress=False)  # no figure, no claims
    index = write_index(out).read_text()
    assert index.index("Scoreboard") < index.index("Reports")
    assert "3 primary comparisons: 1 hold, 0 fail, 1 negligible, 1 undecided; not yet replicated" in index
    assert "<em>negligible</em> when, at the seed cap, it is shown to be smaller than the comparison" in index
    assert '<img class="thumb" src="thumbs/figs.png"' in index and "thumbs/tiny.png" not in index
    assert 'href="figs.no-code.html">without code' in index and 'href="tiny.no-code.html"' in index
    rows = scoreboard_table(index)
    assert rows.verdict.tolist() == ["holds", "negligible", "undecided"]  # the exploratory "holds" is not counted
    assert rows.loc["1a", "interval"] == "[+1.10, +5.30]" and rows.loc["1a", "on replication"] == ""
    for page in ("figs.html", "figs.no-code.html"):
        text = (out / page).read_text()
        assert text.index("In short.") < text.index("<img") < text.rindex("the computed headline")
    code = '<div class="highlight'
    assert code in (out / "figs.html").read_text() and code not in (out / "figs.no-code.html").read_text()
    assert broken_links(out) == []
    again = [dict(r, verdict="holds" if r["id"] != "3a" else "undecided", seeds=15) for r in PRIMARY]
    (out / "replication.json").write_text(
        json.dumps({"kernels": {"cpu capability": "DEFAULT", "ONEDNN_MAX_CPU_ISA": "SSE41"}, "primary": again})
    )
    index = write_index(out).read_text()
    assert (
        "1 of 3 rerun replicated (same verdict) under a second kernel family "
        "(torch CPU capability DEFAULT, oneDNN ISA SSE41)." in index
    )
    rows = scoreboard_table(index)
    assert rows.replicated.tolist() == ["yes", "no", "no"] and rows.loc["3a", "on replication"] == "undecided"
    assert rows.loc["3a", "seeds on replication"] == "15 seeds"
    (out / "replication.json").write_text(
        json.dumps({"kernels": {"cpu capability": "DEFAULT", "ONEDNN_MAX_CPU_ISA": "SSE41"}, "primary": again[:2]})
    )  # one comparison added since it ran
    index = write_index(out).read_text()
    assert (
        "1 of 2 rerun replicated (same verdict) under a second kernel family" in index
        and "; 1 not rerun there" in index
    )
    assert scoreboard_table(index).replicated.tolist() == ["yes", "no", ""]
    (out / "thumbs" / "figs.png").unlink()
    (out / "figs.no-code.html").unlink()
    write_index(out)
    assert broken_links(out) == []  # what is missing is not linked


def test_every_link_and_image_of_the_committed_cpu_reports_resolves():
    folder = ROOT / "reports" / "cpu"
    assert broken_links(folder) == []
    index = (folder / "index.html").read_text()
    for executed in sorted(folder.glob("*.ipynb")):
        assert f'href="{executed.stem}.html"' in index and f'href="{executed.stem}.no-code.html"' in index
        assert f'src="thumbs/{executed.stem}.png"' in index
    assert 'src="scoreboard.png"' in index


def test_an_empty_claims_table_is_shown_without_verdicts(capsys):
    """Notebook 06 on smoke chooses no regime, so its claims table is empty: shown, with nothing for the scoreboard."""
    from qlib.scoreboard import MIME, records, show_claims

    show_claims(pd.DataFrame())
    assert "Empty DataFrame" in capsys.readouterr().out
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output("display_data", data={MIME: {"claims": []}})])
    ]
    assert records(nb) == []
