"""Do the verdicts hold up under another CPU kernel family? (Issue 17's acceptance.)

Computes the cells behind notebook 06's small-model verdicts (part (a)'s FP drops of ``lr`` and ``mlp`` and part
(b)'s claims in the given regimes), or with ``--notebooks`` the claims tables of other notebooks (as
``bench/claim_counts.py`` reads them), in this process's kernel family and cache, and writes their verdicts as JSON.
Run it once per family, each with its own cache, then compare the two files with ``--compare``:

    .venv/bin/python bench/kernel_verdicts.py --regimes R.json --out avx2.json
    ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 QLIB_CACHE=/tmp/cache_default \\
        .venv/bin/python bench/kernel_verdicts.py --regimes R.json --out default.json --workers 2
    .venv/bin/python bench/kernel_verdicts.py --compare avx2.json default.json

``R.json``: the regimes the notebook chose (``strength.run(cfg)["regimes"]`` as records), so both families test
the same claims; ``--notebooks 04_unlearnable 05_targeted`` instead of ``--regimes`` for those notebooks' claims.
Only same-machine runs are bit-identical; the comparison asks whether a verdict flips.
"""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from qlib.executors import compute
from qlib.experiments import compute_stages, experiment, grid_cells, strength
from qlib.presets import load_preset

sys.path.insert(0, str(Path(__file__).parent))
from claim_counts import PARTS, TESTED, from_cache  # noqa: E402


def verdicts(cfg, chosen: list[dict], workers: int | None) -> dict:
    drops = [(labels, entries) for labels, entries in strength.drop_grids(cfg) if labels["model"] in strength.SMALL]
    claims = strength.claim_grids(cfg, chosen)
    compute([c for _, e in drops + claims for c in grid_cells(e)], "local", workers=workers)
    table = strength.drop_table(strength._rows(drops))
    runs = strength._rows(claims) if claims else pd.DataFrame()
    if not runs.empty:
        runs = runs.assign(
            setting=[("FP" if r == "fp" else f"{r.upper()} {s}") for r, s in zip(runs.regime, runs.scheme)]
        )
    tested = strength.claims(runs) if not runs.empty else pd.DataFrame(columns=["regime", "claim", "our run"])
    sign = lambda r: "undecided" if not r["decided"] else ("drop" if r["drop"] < 0 else "rise")
    return {
        "drops": {
            f"{r['model']}|{r['bounds']}|{r['attack']}|{r['eps_d']:g}": sign(r) for r in table.to_dict("records")
        },
        "claims": {f"{regime}|{claim}": v for regime, claim, v in zip(tested.regime, tested.claim, tested["our run"])},
    }


def notebook_verdicts(cfg, preset: str, notebooks: list[str], workers: int | None) -> dict:
    """The verdict of every claim of ``notebooks``' claims tables, by notebook, part, family and claim."""
    compute_stages(notebooks, cfg, None, lambda cells, _: compute(cells, "local", workers=workers))
    out = {}
    for nb in notebooks:
        table = TESTED[nb](experiment(nb), from_cache(preset, nb))
        parts = [c for c in PARTS if c in table]
        for r in table.to_dict("records"):
            out["|".join([nb, *(str(r[c]) for c in parts), r["family"], r["claim"]])] = r["our run"]
    return {"drops": {}, "claims": out}


def compare(a: dict, b: dict) -> None:
    for part in ("drops", "claims"):
        keys = sorted(set(a[part]) & set(b[part]))
        if not keys:
            continue
        flipped = [
            k
            for k in keys
            if {a[part][k], b[part][k]} >= {"holds", "fails"} or {a[part][k], b[part][k]} >= {"drop", "rise"}
        ]
        moved = [k for k in keys if (a[part][k] == "undecided") != (b[part][k] == "undecided")]
        decided = sum(a[part][k] != "undecided" for k in keys)
        print(
            f"{part}: {len(keys)} compared, {decided} decided in the first family; {len(flipped)} decided one way "
            f"in one family and the other way in the other; {len(moved)} moved between decided and undecided"
        )
        for k in flipped + moved:
            print(f"  {k}: {a[part][k]} → {b[part][k]}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--regimes", help="JSON list of {model, bounds, eps_d}")
    p.add_argument(
        "--notebooks",
        nargs="+",
        choices=[nb for nb in TESTED if nb != "06_attack_strength"],
        help="these notebooks' claims instead of notebook 06's",
    )
    p.add_argument("--out")
    p.add_argument("--workers", type=int)
    p.add_argument("--compare", nargs=2, metavar="FILE")
    args = p.parse_args()
    if args.compare:
        compare(*(json.load(open(f)) for f in args.compare))
        return
    cfg = load_preset(args.preset)
    result = (
        notebook_verdicts(cfg, args.preset, args.notebooks, args.workers)
        if args.notebooks
        else verdicts(cfg, json.load(open(args.regimes)), args.workers)
    )
    json.dump(result, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
