"""Executing notebooks with papermill and rendering them, with an index page, into ``reports/<preset>/``."""

import datetime
import html
from pathlib import Path

import nbformat

from .data import PROJECT_ROOT
from .presets import read_yaml

KERNEL = "qlib"
HEADLINE_TAG = "headline"


def execute(notebook: Path, preset: str, out_dir: Path, overrides: dict | None = None, progress: bool = True) -> Path:
    """Run ``notebook`` with the preset's YAML values (plus ``overrides``) as papermill parameters.

    Writes the executed notebook and its HTML rendering into ``out_dir``; returns the HTML path.
    """
    import papermill

    notebook = Path(notebook)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / notebook.name
    params = {**read_yaml(preset), **(overrides or {})}
    papermill.execute_notebook(
        str(notebook), str(executed), parameters=params, kernel_name=KERNEL, progress_bar=progress, cwd=str(notebook.parent)
    )
    return render(executed)


def render(executed: Path) -> Path:
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    exporter = HTMLExporter()
    # merge a progress bar's many writes and keep only what a terminal would show after each \r
    exporter.register_preprocessor(CoalesceStreamsPreprocessor(enabled=True), enabled=True)
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    out = executed.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


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
    """``index.html`` linking every executed notebook in ``out_dir``, each with its headline."""
    from nbconvert.filters.markdown import markdown2html

    items = []
    for executed in sorted(out_dir.glob("*.ipynb")):
        nb = nbformat.read(executed, as_version=4)
        items.append(
            f'<section><h2><a href="{html.escape(executed.with_suffix(".html").name)}">{html.escape(_title(nb))}</a></h2>'
            f"{markdown2html(headline(nb))}</section>"
        )
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>qlib reports: {html.escape(out_dir.name)}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
        "section{border-top:1px solid #ccc;padding:.5em 0}</style></head><body>"
        f"<h1>qlib reports — preset <code>{html.escape(out_dir.name)}</code></h1>"
        f"<p>Index written {stamp}. Each report states the command, machine and wall time that produced it.</p>"
        + "".join(items)
        + "</body></html>"
    )
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def report_dir(preset: str) -> Path:
    return PROJECT_ROOT / "reports" / preset
