"""Compare two caches entry by entry: did two runs (two executors, two machines) give the same numbers?

    .venv/bin/python bench/compare_caches.py CACHE_A CACHE_B

Every entry of CACHE_A that CACHE_B also holds is compared: tensors (models, poisons, targets) bit for bit, JSON
records (accuracies, histories, poison manifests) field for field without what describes the run rather than the
result (wall times, the machine record). Prints the entries that differ and a count per kind; exit status 1 if any
differs. Entries only in CACHE_A are counted, not compared.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

RUN_FIELDS = {"seconds", "machine"}  # how an entry was made, not what it holds


def result(record):
    if isinstance(record, dict):
        return {k: result(v) for k, v in record.items() if k not in RUN_FIELDS}
    if isinstance(record, list):
        return [result(v) for v in record]
    return record


def same(a: Path, b: Path) -> bool:
    if a.suffix == ".safetensors":
        x, y = load_file(a), load_file(b)
        return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    return result(json.loads(a.read_text())) == result(json.loads(b.read_text()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args()
    compared, differ, only_a = {}, [], 0
    for path in sorted(args.a.rglob("*")):
        if path.suffix not in (".json", ".safetensors") or ".locks" in path.parts:
            continue
        other = args.b / path.relative_to(args.a)
        if not other.exists():
            only_a += 1
            continue
        compared[path.parent.name] = compared.get(path.parent.name, 0) + 1
        if not same(path, other):
            differ.append(path.relative_to(args.a))
    for path in differ:
        print(f"differs: {path}")
    print(
        f"{sum(compared.values())} files compared ({', '.join(f'{k} {v}' for k, v in sorted(compared.items()))}); "
        f"{len(differ)} differ; {only_a} only in {args.a}"
    )
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
