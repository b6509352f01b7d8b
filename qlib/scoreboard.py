"""The scoreboard: for each of the paper's claims, how many of its comparisons hold, are undecided or fail in our
runs, beside what the paper's own tables say of the same comparisons.

A notebook shows its claims table with :func:`show_claims`, which adds to the displayed table a machine-readable copy
(``MIME``: family, verdict and the paper's verdict of each comparison). The index of a report folder
(``qlib.report.write_index``) reads those copies from the executed notebooks, so the scoreboard counts exactly the
verdicts the reports show. ``CLAIMS`` names the families (``qlib.stats.Comparison.family``) that test each claim.
"""

import pandas as pd

MIME = "application/vnd.qlib.claims+json"
CLAIMS = {  # the paper's claims, each as the families that test it
    "1 quantization more robust": ["PTQ more robust than FP", "QAT more robust than FP"],
    "2 lower bits more robust": ["lower bits more robust"],
    "3 WA more robust than W": ["WA more robust than W"],
    "4 QAA stronger than QOA": ["QAA stronger than QOA"],
    "5 PAQ and ĝ both needed": ["PAQ and ĝ both needed"],
}
OURS = ("holds", "undecided", "fails")
COLOURS = {"holds": "#2e7d32", "undecided": "#bdbdbd", "fails": "#c62828"}


def show_claims(table: pd.DataFrame) -> None:
    """Display a claims table (``qlib.stats.claims``) with its verdicts attached as ``MIME`` for the scoreboard (none
    for an empty table, such as notebook 06's on ``smoke``, where no regime is chosen)."""
    from IPython.display import display

    records = [] if table.empty else [{"family": f, "our run": o, "paper": p if isinstance(p, str) else None}
                                      for f, o, p in zip(table.family, table["our run"], table.paper)]
    display({"text/html": table._repr_html_(), "text/plain": repr(table), MIME: {"claims": records}}, raw=True)


def records(nb) -> list[dict]:
    """The claims an executed notebook (an ``nbformat`` node) showed with :func:`show_claims`."""
    return [r for cell in nb.cells for out in cell.get("outputs", []) for r in out.get("data", {}).get(MIME, {}).get("claims", [])]


def count(rows: list[dict]) -> pd.DataFrame:
    """Per claim of ``CLAIMS``: the comparisons our runs decide each way (``no test``: another verdict, such as Table
    4's comparisons of one poison with itself) and those the paper's tables say hold or fail (``no number``:
    comparisons the paper has no cell for). Families outside ``CLAIMS`` (beyond the paper) are left out."""
    family_of = {f: claim for claim, families in CLAIMS.items() for f in families}
    out = []
    for claim in CLAIMS:
        mine = [r for r in rows if family_of.get(r["family"]) == claim]
        paper = [r["paper"] for r in mine]
        out.append({"claim": claim, **{v: sum(r["our run"] == v for r in mine) for v in OURS},
                    "no test": sum(r["our run"] not in OURS for r in mine), "comparisons": len(mine), "paper: holds": paper.count("holds"), "paper: fails": paper.count("fails"),
                    "paper: no number": sum(p is None for p in paper)})
    return pd.DataFrame(out)


def figure(counts: pd.DataFrame, path) -> None:
    """Horizontal stacked bars, one per claim: our comparisons that hold, are undecided and fail; the paper's own
    verdict on them as text beside each bar. Written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.55 * len(counts) + 1.2))
    left = pd.Series(0, index=counts.index)
    for verdict in OURS:
        ax.barh(counts.claim, counts[verdict], left=left, color=COLOURS[verdict], label=verdict)
        left += counts[verdict]
    for y, (_, r) in enumerate(counts.iterrows()):
        ax.text(left.iloc[y] + 0.5, y, f"paper: {r['paper: holds']} hold, {r['paper: fails']} fail", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(1, left.max()) * 1.45)
    ax.set_xlabel("comparisons in our runs")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
