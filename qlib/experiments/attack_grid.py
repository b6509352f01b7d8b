"""The grid of the indiscriminate tables (1, 3, 5 and notebook 01's sweep): attacks × budgets ε_d × (regime,
scheme) × seeds. Quantization-oblivious poisons are made once per seed and budget and reused in every setting;
quantization-aware ones (``Needs.scheme == "attacked"``: GC-Q, TGDA-Q) are made per scheme and skip FP. Each entry
reads the poison and two accuracies: the clean and the poisoned model of the same regime, scheme and seed."""

import pandas as pd

from ..attacks.base import needs
from ..cells import accuracy, poison
from ..presets import Preset
from ..quant import QuantScheme
from . import Entry, grid_rows


def entries(
    cfg: Preset, attacks: list[str], eps_ds: list[float], settings: list[tuple[str, QuantScheme]]
) -> list[Entry]:
    out = []
    for seed in cfg.seeds:
        for name in attacks:
            aware = needs(name).scheme == "attacked"
            for eps_d in eps_ds:
                for regime, scheme in settings:
                    if aware and scheme.is_fp:
                        continue
                    nu = poison(cfg, name, seed, eps_d, scheme if aware else None)
                    out.append(
                        (
                            {"seed": seed, "attack": name, "eps_d": eps_d, "regime": regime, "scheme": scheme},
                            {
                                "poison": nu,
                                "clean": accuracy(cfg, seed, regime, scheme),
                                "poisoned": accuracy(cfg, seed, regime, scheme, nu),
                            },
                        )
                    )
    return out


def _row(labels: dict, values: dict) -> dict:
    (nu, seconds), scheme = values["poison"], labels["scheme"]
    clean, acc = values["clean"]["acc"], values["poisoned"]["acc"]
    objective = nu.provenance.get("objective", {})
    return {
        "regime": labels["regime"],
        "scheme": scheme.name,
        "method": scheme.method,
        "seed": labels["seed"],
        "attack": labels["attack"],
        "eps_d": labels["eps_d"],
        "clean_acc": clean,
        "acc": acc,
        "drop": acc - clean,
        "attack_seconds": seconds,
        "objective_initial": objective.get("initial"),
        "objective_final": objective.get("final"),
        "objective_steps": objective.get("steps"),
        "norm": nu.provenance.get("norm"),
        "eps": nu.provenance.get("eps"),
        "poison": nu.digest()[:12],
    }


def rows(grid: list[Entry]) -> pd.DataFrame:
    """One tidy row per seed, attack, ε_d and setting: clean and poisoned accuracy, the drop (poisoned − clean,
    negative = the attack hurt), the attack's wall time and, for GC and GC-Q, its objective."""
    return grid_rows(grid, _row)
