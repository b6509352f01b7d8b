"""Executing notebooks with papermill and rendering them, with an index page, into ``reports/<preset>/``.

A report is a pair, the executed notebook and its HTML, that share a run id, with two companions made from the
same run: the HTML without code (``<name>.no-code.html``, nbconvert's ``exclude_input``) and a thumbnail of the
main figure (``thumbs/<name>.png``: the first image of the cell tagged ``main-figure``). Both HTML pages open with
the report's headline (the output of the cell tagged ``headline``). All are made in a scratch folder and moved into
place only after the run succeeded, so a failed or killed run leaves the last good report as it was; a failed
run's executed notebook is kept under ``failed/`` for debugging. The index lists complete pairs only and opens with
the scoreboard (``qlib.scoreboard``) of the claims the reports show. Parameters are checked against the notebook's
parameters cell before a kernel starts.
"""

import base64
import datetime
import html
import io
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

import nbformat
from PIL import Image

from . import scoreboard
from .artifacts import atomic_write
from .data import PROJECT_ROOT
from .params import OWN, check_own, check_type, parse_hint
from .presets import FIELDS, load_preset, read_yaml
from .registry import ParameterError, unknown_name

KERNEL = "qlib"
HEADLINE_TAG = "headline"
FIGURE_TAG = "main-figure"
NO_CODE = ".no-code.html"  # suffix of a report's HTML without code
THUMBS = "thumbs"  # folder of the main figures' thumbnails
THUMB_WIDTH = 360  # pixels
RUN_META = "qlib-run"  # the run id in the notebook's metadata and in the HTML's <meta>
SCRATCH = ".partial-"  # scratch folders of runs in progress: .partial-<host>-<pid>-<notebook>-<random>


def notebook_parameters(notebook: Path) -> dict:
    """The parameters ``notebook``'s cell tagged ``parameters`` declares, as papermill reads it, each with the type
    a value must have beyond the preset's fields (which :func:`load_preset` checks): a notebook's own from
    ``qlib.params.OWN``, any other from its annotation in the cell (None: any value)."""
    import papermill  # optional: a GPU machine may run qlib without papermill

    notebook = Path(notebook)
    if not notebook.is_file():
        raise ParameterError(
            f"notebook {str(notebook)!r} not found; the project's notebooks: "
            f"{', '.join(p.name for p in sorted((PROJECT_ROOT / 'notebooks').glob('*.ipynb')))}"
        )
    declared = papermill.inspect_notebook(str(notebook))
    if not declared:
        raise ParameterError(f"notebook {notebook.name} has no cell tagged 'parameters'")
    return {
        name: OWN[name][0]
        if name in OWN
        else parse_hint(p["inferred_type_name"])
        if name not in FIELDS and p["inferred_type_name"] != "None"
        else None
        for name, p in declared.items()
    }


def check_parameters(notebook: Path, preset: str, values: dict) -> None:
    """Refuse, with a :class:`ParameterError` naming the value and what is allowed, any name ``notebook`` does not
    declare and any value of the wrong type or out of range, before anything runs or is written."""
    hints = notebook_parameters(notebook)
    for name, value in values.items():
        if name == "preset":  # a preset file passed with -f names its preset: fine if it is the one chosen
            if value != preset:
                raise ParameterError(f"parameter preset={value!r}: choose the preset with --preset ({preset!r} now)")
            continue
        if name not in hints:
            if name in FIELDS and value == read_yaml(preset).get(name):
                # a preset file names every field; one this notebook does not use is fine at the preset's value
                continue
            raise unknown_name("parameter", name, [n for n in hints if n != "preset"], Path(notebook).name)
        if name in OWN:
            check_own(name, value)
        elif name not in FIELDS and hints[name] is not None:
            check_type(name, value, hints[name])
    load_preset(preset, **{k: v for k, v in values.items() if k in FIELDS})


def execute(notebook: Path, preset: str, out_dir: Path, overrides: dict | None = None, progress: bool = True) -> Path:
    """Run ``notebook`` with ``preset`` and the ``overrides`` it declares as papermill parameters and put the
    executed notebook and its HTML into ``out_dir`` together; returns the HTML path.

    A bad parameter is refused before a kernel starts. If the run fails, the executed notebook goes to
    ``out_dir/failed/`` and the error is raised; the previous pair in ``out_dir`` is left untouched."""
    import papermill  # optional: a GPU machine may run qlib without papermill

    notebook, out_dir = Path(notebook), Path(out_dir)
    check_parameters(notebook, preset, overrides or {})
    declared = notebook_parameters(notebook)  # the notebook loads the preset's other values by name
    params = {"preset": preset, **{k: v for k, v in (overrides or {}).items() if k in declared}}
    if params.get("poison_path"):  # the kernel runs in the notebook's folder: a path from here must still resolve
        params["poison_path"] = str(Path(params["poison_path"]).resolve())
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_scratch(out_dir)
    scratch = Path(
        tempfile.mkdtemp(dir=out_dir, prefix=f"{SCRATCH}{socket.gethostname()}-{os.getpid()}-{notebook.stem}-")
    )
    executed = scratch / notebook.name
    try:
        try:
            papermill.execute_notebook(
                str(notebook),
                str(executed),
                parameters=params,
                kernel_name=KERNEL,
                progress_bar=progress,
                cwd=str(notebook.parent),
            )
        except BaseException:
            if executed.exists():
                (out_dir / "failed").mkdir(exist_ok=True)
                os.replace(executed, out_dir / "failed" / notebook.name)
            raise
        run = uuid.uuid4().hex
        nb = nbformat.read(executed, as_version=4)
        nb.metadata[RUN_META] = run
        nbformat.write(nb, executed)
        render(executed, run)
        thumb = thumbnail(executed)
        if thumb is not None:
            (out_dir / THUMBS).mkdir(exist_ok=True)
            os.replace(thumb, out_dir / THUMBS / thumb.name)
        else:
            (out_dir / THUMBS / f"{notebook.stem}.png").unlink(missing_ok=True)
        os.replace(executed.with_name(executed.stem + NO_CODE), out_dir / f"{notebook.stem}{NO_CODE}")
        os.replace(executed, out_dir / notebook.name)
        os.replace(executed.with_suffix(".html"), out_dir / f"{notebook.stem}.html")
        (out_dir / "failed" / notebook.name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out_dir / f"{notebook.stem}.html"


def _remove_abandoned_scratch(out_dir: Path) -> None:
    """Scratch folders of this host's runs whose process is gone (killed): nothing else will remove them. Another
    host's are left alone: its processes cannot be seen from here."""
    for folder in out_dir.glob(f"{SCRATCH}{socket.gethostname()}-*"):
        try:
            os.kill(int(folder.name[len(SCRATCH) + len(socket.gethostname()) + 1 :].split("-", 1)[0]), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, PermissionError):
            pass


def render(executed: Path, run: str) -> Path:
    """``executed`` as HTML beside it, and without code as ``<name>.no-code.html``, both stamped with the run id
    ``run`` and opening with the headline."""
    from nbconvert import HTMLExporter  # optional, as papermill: rendering is not needed to compute
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    nb = with_headline(nbformat.read(executed, as_version=4))
    out = executed.with_suffix(".html")
    for path, no_code in ((out, False), (executed.with_name(executed.stem + NO_CODE), True)):
        exporter = HTMLExporter(exclude_input=no_code, exclude_input_prompt=no_code, exclude_output_prompt=no_code)
        # merge a progress bar's many writes and keep only what a terminal would show after each \r
        exporter.register_preprocessor(CoalesceStreamsPreprocessor(enabled=True), enabled=True)
        body, _ = exporter.from_notebook_node(nb)
        path.write_text(
            body.replace("<head>", f'<head>\n<meta name="{RUN_META}" content="{run}">', 1), encoding="utf-8"
        )
    return out


def with_headline(nb):
    """``nb`` with its headline as a markdown cell after the title cell, so that a report opens with its result."""
    nb = nbformat.from_dict(nb)
    text = headline(nb)
    title = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
    nb.cells.insert(title + 1, nbformat.v4.new_markdown_cell(f"> **In short.** {text.strip()}"))
    return nb


def main_figure(nb) -> bytes | None:
    """The PNG of the first image the cell tagged ``main-figure`` shows; None without one."""
    for cell in nb.cells:
        if FIGURE_TAG in cell.get("metadata", {}).get("tags", []):
            for out in cell.get("outputs", []):
                if "image/png" in out.get("data", {}):
                    return base64.b64decode(out["data"]["image/png"])
    return None


def thumbnail(executed: Path) -> Path | None:
    """The main figure of ``executed`` shrunk to ``THUMB_WIDTH`` pixels wide, as ``<name>.png`` beside it."""
    png = main_figure(nbformat.read(executed, as_version=4))
    if png is None:
        return None
    with Image.open(io.BytesIO(png)) as im:
        im.thumbnail((THUMB_WIDTH, THUMB_WIDTH * 4))
        out = executed.with_suffix(".png")
        im.save(out, format="PNG")
    return out


def complete(executed: Path) -> bool:
    """Whether ``executed`` and its HTML are one run's pair."""
    page = executed.with_suffix(".html")
    if not page.exists():
        return False
    run = nbformat.read(executed, as_version=4).metadata.get(RUN_META)
    return run is not None and f'<meta name="{RUN_META}" content="{run}">' in page.read_text(encoding="utf-8")


def _title(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("# ").strip()
    return "untitled"


def headline(nb) -> str:
    """The text output of the cell tagged ``headline``: the report's one-paragraph result."""
    for cell in nb.cells:
        if HEADLINE_TAG in cell.get("metadata", {}).get("tags", []):
            for out in cell.get("outputs", []):
                data = out.get("data", {})
                if "text/markdown" in data:
                    return data["text/markdown"]
                if "text/plain" in data or out.get("text"):
                    return data.get("text/plain") or out["text"]
    return "(no headline: the notebook has no executed cell tagged 'headline')"


def write_index(out_dir: Path) -> Path:
    """``index.html``: the scoreboard of the primary comparisons (a table and ``scoreboard.png``, with the verdicts
    of ``make replicate`` where it ran), then each report with its main figure's thumbnail, its headline, and links
    to it with and without code."""
    from nbconvert.filters.markdown import markdown2html  # optional, as papermill

    items, primary = [], []
    for executed in filter(complete, sorted(out_dir.glob("*.ipynb"))):
        nb = nbformat.read(executed, as_version=4)
        primary += scoreboard.primary_records(nb)
        page, stem = executed.with_suffix(".html").name, executed.stem
        thumb = out_dir / THUMBS / f"{stem}.png"
        figure = (
            f'<a href="{html.escape(page)}"><img class="thumb" src="{THUMBS}/{html.escape(thumb.name)}" '
            f'alt="main figure of {html.escape(stem)}"></a>'
            if thumb.exists()
            else ""
        )
        no_code = out_dir / f"{stem}{NO_CODE}"
        links = f'<a href="{html.escape(page)}">full report</a>' + (
            f' · <a href="{html.escape(no_code.name)}">without code</a>' if no_code.exists() else ""
        )
        items.append(
            f'<section>{figure}<h2><a href="{html.escape(page)}">{html.escape(_title(nb))}</a></h2>'
            f"<p class='links'>{links}</p>{markdown2html(headline(nb))}</section>"
        )
    board = ""
    if primary:
        replicated = scoreboard.replication(out_dir)
        table = scoreboard.board(primary, replicated)
        atomic_write(out_dir / "scoreboard.png", lambda tmp: scoreboard.figure(table, tmp))
        board = (
            "<h2>Scoreboard: the paper's claims, decided by primary comparisons</h2>"
            f"<p><strong>{html.escape(scoreboard.headline(table, replicated))}</strong></p>"
            f"<p>{scoreboard.MEANING} The other notebooks' claims tables are exploratory: shown, never counted.</p>"
            f'<img class="board" src="scoreboard.png" alt="scoreboard figure">'
            + table.to_html(index=False, border=0, classes="board")
        )
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>qlib reports: {html.escape(out_dir.name)}</title>"
        "<style>body{font-family:sans-serif;max-width:64em;margin:2em auto;line-height:1.4}"
        "section{border-top:1px solid #ccc;padding:.5em 0;overflow:auto}"
        "img.thumb{float:right;width:300px;margin:0 0 .5em 1em;border:1px solid #ddd}img.board{max-width:100%}"
        "table.board{border-collapse:collapse;margin:.5em 0}table.board td,table.board th{padding:.2em .6em;"
        "border-bottom:1px solid #ddd;text-align:right}"
        "table.board td:first-child,table.board td:nth-child(3){text-align:left}"
        ".links{font-size:90%}</style></head><body>"
        f"<h1>qlib reports — preset <code>{html.escape(out_dir.name)}</code></h1>"
        f"<p>Index written {stamp}. Each report states the command, machine and wall time that produced it.</p>"
        + board
        + "<h2>Reports</h2>"
        + "".join(items)
        + "</body></html>"
    )
    index = out_dir / "index.html"
    atomic_write(index, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return index


def report_dir(preset: str) -> Path:
    return PROJECT_ROOT / "reports" / preset


def book_pages(preset: str, dest: Path) -> Path:
    """The reports of ``preset`` as pages of the documentation site (``make docs``): each complete executed notebook,
    opening with its headline, copied into ``dest`` (emptied first), and ``dest/index.md`` listing them. Refused
    when the preset has no complete report yet (``make reproduce PRESET=…`` writes them)."""
    source, dest = report_dir(preset), Path(dest)
    executed = [p for p in sorted(source.glob("*.ipynb")) if complete(p)]
    if not executed:
        raise ParameterError(f"reports/{preset} holds no complete report: run make reproduce PRESET={preset} first")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    lines = [
        f"# Reports: the `{preset}` preset\n",
        "Each notebook as `make reproduce` executed it, opening with its result.\n",
    ]
    for path in executed:
        nb = with_headline(nbformat.read(path, as_version=4))
        nbformat.write(nb, dest / path.name)
        lines.append(f"- {{doc}}`{path.stem}`: {' '.join(headline(nb).split())}")
    (dest / "index.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest
