"""The scoreboard: the verdicts of the primary comparisons (notebook 08, ``qlib.experiments.verdicts``) and whether
each replicated under a second kernel family (``make replicate``).

A notebook shows its tables with :func:`show_verdicts` (primary comparisons) or :func:`show_claims` (the other
notebooks' exploratory claims tables), which attach a machine-readable copy to the displayed table. The index of a
report folder (``qlib.report.write_index``) reads the primary verdicts from the executed notebooks and the replication's
from ``replication.json`` beside them, so the scoreboard shows exactly what the reports show. Exploratory claims are
never counted: only primary comparisons have verdicts. ``CLAIMS`` names the exploratory families that touch each of
the paper's claims (``bench/claim_counts.py`` counts them for the README's history).
"""

import json
from pathlib import Path

import pandas as pd
from IPython.display import display
from matplotlib.figure import Figure

MIME = "application/vnd.qlib.claims+json"  # an exploratory claims table
PRIMARY_MIME = "application/vnd.qlib.primary+json"  # the primary comparisons' verdicts
REPLICATION = "replication.json"
CLAIMS = {  # the paper's claims, each as the exploratory families that touch it
    "1 quantization more robust": ["PTQ more robust than FP", "QAT more robust than FP"],
    "2 lower bits more robust": ["lower bits more robust"],
    "3 WA more robust than W": ["WA more robust than W"],
    "4 QAA stronger than QOA": ["QAA stronger than QOA"],
    "5 PAQ and ĝ both needed": ["PAQ and ĝ both needed"],
}
VERDICTS = ("holds", "fails", "negligible", "undecided")
COLOURS = {"holds": "#2e7d32", "fails": "#c62828", "negligible": "#1565c0", "undecided": "#9e9e9e"}
MEANING = (
    "A verdict is decided on fresh seeds (a targeted comparison: fresh trials) by a comparison declared before the "
    "data, and is wrong with probability "
    "at most 5% per claim: <em>holds</em> or <em>fails</em> when the difference is shown to lie on one side of "
    "zero; <em>negligible</em> when, at the seed cap, it is shown to be smaller than the comparison's δ either "
    "way (it does not matter at this scale); <em>undecided</em> otherwise. <em>size</em> says whether the "
    "difference is shown below δ, at least δ, or neither."
)


def _display(table: pd.DataFrame, mime: str, payload: dict) -> None:
    display({"text/html": table._repr_html_(), "text/plain": repr(table), mime: payload}, raw=True)


def show_claims(table: pd.DataFrame) -> None:
    """Display an exploratory claims table (``qlib.stats.claims``) with its rows attached as ``MIME`` (none for an
    empty table, such as notebook 06's on ``smoke``, where no regime is chosen)."""
    records = (
        []
        if table.empty
        else [
            {"family": f, "our run": o, "paper": p if isinstance(p, str) else None}
            for f, o, p in zip(table.family, table["our run"], table.paper)
        ]
    )
    _display(table, MIME, {"claims": records})


def show_verdicts(verdicts: pd.DataFrame, records: list[dict]) -> None:
    """Display the primary verdict table with its ``records`` (JSON-ready rows) attached as ``PRIMARY_MIME``."""
    _display(verdicts, PRIMARY_MIME, {"primary": records})


def records(nb) -> list[dict]:
    """The exploratory claims an executed notebook (an ``nbformat`` node) showed with :func:`show_claims`."""
    return [
        r
        for cell in nb.cells
        for out in cell.get("outputs", [])
        for r in out.get("data", {}).get(MIME, {}).get("claims", [])
    ]


def primary_records(nb) -> list[dict]:
    """The primary verdicts an executed notebook showed with :func:`show_verdicts`."""
    return [
        r
        for cell in nb.cells
        for out in cell.get("outputs", [])
        for r in out.get("data", {}).get(PRIMARY_MIME, {}).get("primary", [])
    ]


def replication(folder: Path) -> dict | None:
    """``replication.json`` of a report folder (``python -m qlib replicate``), or None if it was not run."""
    path = folder / REPLICATION
    return json.loads(path.read_text()) if path.exists() else None


def board(primary: list[dict], replicated: dict | None) -> pd.DataFrame:
    """Per primary comparison: claim, comparison, δ, effect with its interval (points: the repeated confidence
    interval, or a targeted comparison's Newcombe interval, each at 1 − α/m), seeds (or trials) used,
    verdict, and the verdict on replication (blank: not run) with whether the two agree."""
    other = {r["id"]: r for r in (replicated or {}).get("primary", [])}
    rows = []
    for r in primary:
        again = other.get(r["id"])
        fmt = lambda v: "" if v is None else f"{v:+.2f}"
        rows.append(
            {
                "id": r["id"],
                "claim": r["claim"],
                "comparison": r["comparison"],
                "δ": r["δ"],
                "effect": fmt(r["effect"]),
                "interval": f"[{fmt(r['low'])}, {fmt(r['high'])}]",
                "size": r.get("size", ""),
                "seeds": f"{r['seeds']} {r.get('unit', 'seed')}s",
                "verdict": r["verdict"],
                "on replication": again["verdict"] if again else "",
                "seeds on replication": f"{again['seeds']} {again.get('unit', 'seed')}s" if again else "",
                "replicated": "" if again is None else ("yes" if again["verdict"] == r["verdict"] else "no"),
            }
        )
    return pd.DataFrame(rows)


def headline(table: pd.DataFrame, replicated: dict | None) -> str:
    """``9 primary comparisons: 3 hold, 0 fail, 4 negligible, 2 undecided; 8 of 9 replicated under …``."""
    n = table.verdict.value_counts()
    text = (
        f"{len(table)} primary comparisons: {n.get('holds', 0)} hold, {n.get('fails', 0)} fail, "
        f"{n.get('negligible', 0)} negligible, {n.get('undecided', 0)} undecided"
    )
    if replicated is None:
        return text + "; not yet replicated under a second kernel family (make replicate)."
    kernels = replicated.get("kernels", {})
    rerun = int((table.replicated != "").sum())
    missing = f"; {len(table) - rerun} not rerun there (make replicate again)" if rerun < len(table) else ""
    return text + (
        f"; {(table.replicated == 'yes').sum()} of {rerun} rerun replicated (same verdict) under a second "
        f"kernel family (torch CPU capability {kernels.get('cpu capability')}, oneDNN ISA "
        f"{kernels.get('ONEDNN_MAX_CPU_ISA') or 'default'}){missing}."
    )


def figure(table: pd.DataFrame, path) -> None:
    """One stacked bar per claim: its primary comparisons by verdict, with how many replicated. PNG at ``path``."""
    claims = sorted(table.claim.unique())
    fig = Figure(figsize=(8, 0.5 * len(claims) + 1.2))  # no pyplot: no backend to choose, none changed in a notebook
    ax = fig.subplots()
    left = pd.Series(0, index=claims)
    for verdict in VERDICTS:
        counts = pd.Series([(table[table.claim == c].verdict == verdict).sum() for c in claims], index=claims)
        ax.barh([f"claim {c}" for c in claims], counts, left=left, color=COLOURS[verdict], label=verdict)
        left += counts
    for y, c in enumerate(claims):
        rows = table[table.claim == c]
        rerun = int((rows.replicated != "").sum())
        note = (
            f"{(rows.replicated == 'yes').sum()} of {rerun} rerun replicated" if rerun else "not replicated yet"
        ) + (f", {len(rows) - rerun} not rerun" if 0 < rerun < len(rows) else "")
        ax.text(left.iloc[y] + 0.05, y, note, va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(1, left.max()) * 1.6)
    ax.set_xlabel("primary comparisons")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
