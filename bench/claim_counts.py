"""How many of the paper's claims 1-5 hold, are undecided or fail under ``qlib.stats``'s rule (paired tests,
Benjamini-Hochberg within each family), per claim and notebook.

    .venv/bin/python bench/claim_counts.py --preset cpu             # the runs in the cache (nothing is computed)
    .venv/bin/python bench/claim_counts.py --runs /tmp/before_runs  # tidy runs, one CSV per table:
                                                                    # {notebook}__{table}.csv

A claim of the paper is one or more families of ``stats.claims`` (``CLAIMS``); every notebook whose module tests
claims is read (``TESTED``: how its claims table comes from its runs; a notebook missing there is an error), so a
family of these names in a later notebook counts beside the others. With ``--preset`` a notebook whose cells the
cache lacks is refused rather than computed (``--notebooks`` leaves it out). ``same poison`` counts Table 4's
comparisons of one poison with itself (no test).
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

from qlib import pipeline
from qlib.experiments import NOTEBOOKS, ablation, experiment
from qlib.presets import load_preset
from qlib.scoreboard import CLAIMS
from qlib.stats import ALPHA

TESTED = {  # notebook → its claims table from its module and what the module's run returns
    "01_ptq": lambda m, runs: m.claims(m.summary(runs["table1"])),
    "02_qat": lambda m, runs: m.claims(m.summary(runs)),
    "03_ablation": lambda m, runs: m.claims(m.summary(runs)),
    "04_unlearnable": lambda m, runs: m.claims(m.summary(runs)),
    "05_targeted": lambda m, runs: m.claims(runs),
    "06_attack_strength": lambda m, runs: m.claims(runs["claims"]),
}
WITHOUT_CLAIMS = ("00_clean_baselines", "07_evaluate_your_poison")  # notebooks that test none of the paper's claims
PARTS = ("outcome", "regime")  # columns that split a notebook's claims table (05's outcomes, 06's regimes)
VERDICTS = {
    "holds": "holds",
    "undecided": "undecided",
    "fails": "fails",
    ablation.SAME_POISON: "same poison",
}  # column names
DTYPES = {"poison": str}  # a poison digest of only digits is still a digest


def from_csv(folder: Path, notebook: str):
    """What ``run`` returned for ``notebook``, from ``folder/{notebook}__{table}.csv``: one table ``runs`` as a frame,
    several as {table: frame}; None without any."""
    tables = {p.stem.split("__", 1)[1]: pd.read_csv(p, dtype=DTYPES) for p in sorted(folder.glob(f"{notebook}__*.csv"))}
    if notebook == "03_ablation" and "runs" in tables and "method" not in tables["runs"]:
        tables["runs"]["method"] = tables["runs"].bits.map(lambda b: "bnn" if b == 1 else "int")  # before the LSQ rows
    return None if not tables else tables["runs"] if list(tables) == ["runs"] else tables


def from_cache(preset: str, notebook: str):
    """``run`` of ``notebook`` on ``preset``, refused if the cache lacks any cell it needs: its module's ``ensure``,
    the one step that computes, becomes a check."""
    module = experiment(notebook)

    def refuse(cfg, cells, progress=True):
        if missing := pipeline.pending(cells):
            sys.exit(
                f"claim_counts: the cache lacks {len(missing)} cells of {notebook} (e.g. {missing[0]}); nothing was "
                f"computed. A changed cache key? Or compute them: python -m qlib grid {notebook} --preset {preset}"
            )

    module.ensure = refuse
    return module.run(load_preset(preset), progress=False)


def counts(tested: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per claim, family, notebook and part (05's outcomes, 06's regimes): the number of claims per verdict,
    and how many have p ≤ 0.05 before the Benjamini-Hochberg adjustment."""
    rows = []
    for claim, families in CLAIMS.items():
        for notebook, table in tested.items():
            for family in families:
                mine = table[table.family == family]
                if mine.empty:
                    continue
                parts = [c for c in PARTS if c in mine]
                for part, rows_ in mine.groupby(parts, sort=False) if parts else [((), mine)]:
                    n = rows_["our run"].value_counts()
                    rows.append(
                        {
                            "claim": claim,
                            "family": family,
                            "notebook": notebook,
                            "part": ", ".join(map(str, part if isinstance(part, tuple) else (part,))),
                            **{v: int(n.get(k, 0)) for k, v in VERDICTS.items()},
                            "p ≤ 0.05 unadjusted": int((rows_.p <= ALPHA).sum()),
                        }
                    )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="read every notebook's runs from the cache of this preset")
    source.add_argument(
        "--runs", type=Path, help="a folder of {notebook}__{table}.csv (notebooks without one are skipped)"
    )
    parser.add_argument("--notebooks", nargs="+", default=list(TESTED), choices=list(TESTED), help="default: all")
    args = parser.parse_args()
    if unlisted := [nb for nb in NOTEBOOKS if nb not in TESTED and nb not in WITHOUT_CLAIMS]:
        sys.exit(f"claim_counts: notebook(s) {unlisted} are not in TESTED: say how their claims come from their runs")
    runs = {nb: from_csv(args.runs, nb) if args.runs else from_cache(args.preset, nb) for nb in args.notebooks}
    if skipped := [nb for nb, r in runs.items() if r is None]:
        print(f"no runs in {args.runs} for {', '.join(skipped)}")
    table = counts({nb: TESTED[nb](experiment(nb), r) for nb, r in runs.items() if r is not None})
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))
        print()
        print(table.groupby("claim")[[*VERDICTS.values(), "p ≤ 0.05 unadjusted"]].sum().to_string())


if __name__ == "__main__":
    main()
