"""Run the effect tests over the kernel matrix, then check every bound against the margin rule (tests/effects.py).

    python tests/portability.py            # run the matrix; print each statistic per entry with its margin
    python tests/portability.py --record   # ... and write tests/effects.json, the measurements the bounds rest on
    python tests/portability.py --record -- -k test_ue_ar   # remeasure some tests; the others' records stay

``make test-portability`` runs the first. It exits non-zero when a test fails in any entry or a bound breaks the
rule. The matrix holds the machine's default kernels, forced AVX2 and no vector kernels, each with seeds 0, 1, 2.
"""

import argparse
import collections
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import effects

HERE = Path(__file__).parent
MATRIX = {
    "machine default": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "no vector kernels": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
SEEDS = "0,1,2"


def run_entry(name: str, env: dict, log: Path, pytest_args: list[str]) -> dict:
    """pytest over the effect tests under one matrix entry; appends their statistics to ``log``."""
    clean = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    start = time.time()
    print(f"== {name}: {' '.join(f'{k}={v}' for k, v in env.items()) or '(no variables)'}", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "effect", "-q", "-p", "no:cacheprovider", *pytest_args],
        cwd=HERE.parent,
        env={**clean, **env, "QLIB_EFFECT_SEEDS": SEEDS, "QLIB_EFFECT_LOG": str(log), "QLIB_EFFECT_ENTRY": name},
    )
    run = {"entry": name, "env": env, "returncode": done.returncode, "seconds": round(time.time() - start)}
    with open(log, "a") as f:  # the entry's end: a log reused with --log skips only the entries that ended
        f.write(json.dumps({"finished": run}) + "\n")
    return run


def summarize(rows: list[dict], names) -> tuple[dict, bool]:
    """Per effect of ``names``: its values by entry and seed, worst, spread (max − min), margin and whether
    margin ≥ RULE·spread."""
    by_effect = collections.defaultdict(list)
    for r in rows:
        by_effect[r["effect"]].append(r)
    out, ok = {}, True
    for name in names:
        bound, rs = effects.BOUNDS[name], by_effect.get(name, [])
        if not rs:
            out[name] = {"bound": f"{bound.op} {bound.value}", "missing": True}
            ok = False
            continue
        tests = {r["test"] for r in rs}
        if len(tests) > 1:
            raise SystemExit(f"effect {name!r} is checked by more than one test: {', '.join(sorted(tests))}")
        values = [r["value"] for r in rs]
        margins = [bound.margin(v) for v in values]
        spread = bound.spread(values)
        worst = values[margins.index(min(margins))]
        holds = min(margins) >= effects.RULE * spread
        ok &= holds
        out[name] = {
            "bound": f"{bound.op} {bound.value}",
            "worst": worst,
            "spread": spread,
            "margin": min(margins),
            "holds": holds,
            "source": rs[0]["source"],
            "test": rs[0]["test"],
            "values": {f"{r['entry']} / seed {r['seed']}": r["value"] for r in rs},
            "machine": sorted(
                {
                    f"{r['entry']}: {r['cpu']}, capability {r['capability']}, {r['threads']} threads, "
                    f"torch {r['torch']}"
                    for r in rs
                }
            ),
        }
    return out, ok


def print_table(summary: dict) -> None:
    entries = list(MATRIX)
    print(
        f"\n{'effect':42} {'bound':>9} "
        + " ".join(f"{e[:17]:>17}" for e in entries)
        + f" {'spread':>8} {'margin':>8} rule"
    )
    for name, s in summary.items():
        if s.get("missing"):
            print(f"{name:42} {s['bound']:>9}  NOT MEASURED")
            continue
        cells = []
        for e in entries:
            vs = [v for k, v in s["values"].items() if k.startswith(e + " /")]
            cells.append(f"{'/'.join(f'{v:.3g}' for v in vs):>17}")
        ratio = f" ({s['margin'] / s['spread']:.1f}×)" if s["spread"] else ""
        print(
            f"{name:42} {s['bound']:>9} " + " ".join(cells) + f" {s['spread']:8.4f} {s['margin']:8.4f} "
            f"{'ok' if s['holds'] else 'BREAKS'}{ratio}"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", action="store_true", help="write the measurements to tests/effects.json")
    parser.add_argument("--entries", nargs="+", choices=list(MATRIX), default=list(MATRIX))
    parser.add_argument("--log", help="append the raw measurements here too (JSON lines) and reuse those already there")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest, e.g. -k em")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(args.log) if args.log else Path(tmp) / "effects.jsonl"
        log.touch()
        # reuse the entries of an earlier log that ended cleanly; drop what a killed or failed entry left
        lines = [json.loads(line) for line in log.read_text().splitlines() if line]
        ended = {r["finished"]["entry"] for r in lines if "finished" in r and r["finished"]["returncode"] == 0}
        kept = [r for r in lines if (r["finished"]["entry"] if "finished" in r else r["entry"]) in ended]
        log.write_text("".join(json.dumps(r) + "\n" for r in kept))
        runs = [run_entry(e, MATRIX[e], log, args.pytest_args) for e in args.entries if e not in ended]
        rows = [
            r for r in map(json.loads, log.read_text().splitlines()) if "effect" in r and r["entry"] in args.entries
        ]
    # a run of some tests (pytest arguments) summarizes, and records, only the effects it measured
    names = [n for n in effects.BOUNDS if not args.pytest_args or any(r["effect"] == n for r in rows)]
    summary, ok = summarize(rows, names)
    print_table(summary)
    failed = [r["entry"] for r in runs if r["returncode"] != 0]
    if failed:
        print(f"\neffect tests failed under: {', '.join(failed)}")
    print(f"\nrule: margin ≥ {effects.RULE:g} × spread; {'every bound holds' if ok else 'some bound breaks it'}")
    if args.record and failed:
        print("not recorded: an entry failed")
    elif args.record:
        record = effects.recorded()
        record.update(
            {"command": "python tests/portability.py --record [-- PYTEST_ARGS]", "seeds": SEEDS, "rule": effects.RULE}
        )
        record["effects"] = {n: e for n, e in {**record["effects"], **summary}.items() if n in effects.BOUNDS}
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        record.setdefault("runs", []).append(
            {"finished": stamp, "pytest_args": args.pytest_args, "entries": runs, "effects": sorted(summary)}
        )
        effects.RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        print(f"wrote {effects.RECORD}")
    return 0 if ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
