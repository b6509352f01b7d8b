"""Each notebook's computations as one call: the study runners its cells call, in its order, without the tables
and figures. ``bench/gpu_check.py`` runs them to prove a preset's code path on a device, and the cost model's
test counts the work they do (``qlib.cost``, ``qlib.counters``). ``sweep``: notebook 01's own ``sweep_eps_d`` and
``sweep_attacks``."""

from . import qat_tables, study, tables, targeted, ue_tables
from .presets import Preset
from .registry import Registry

GRIDS = Registry("notebook")


@GRIDS.register("00_clean_baselines")
def clean(cfg: Preset, sweep: dict) -> None:
    study.clean_baselines(cfg, False)
    study.clean_schemes(cfg, False)


@GRIDS.register("01_ptq")
def ptq(cfg: Preset, sweep: dict) -> None:
    tables.table1(cfg, False)
    study.gradpc_targets(cfg, False)
    tables.budget_sweep(cfg, sweep["sweep_eps_d"], sweep["sweep_attacks"], False)


@GRIDS.register("02_qat")
def qat(cfg: Preset, sweep: dict) -> None:
    qat_tables.table3(cfg, False)


@GRIDS.register("03_ablation")
def ablation(cfg: Preset, sweep: dict) -> None:
    qat_tables.table4(cfg, False)


@GRIDS.register("04_unlearnable")
def unlearnable(cfg: Preset, sweep: dict) -> None:
    ue_tables.table5(cfg, False)


@GRIDS.register("05_targeted")
def targeted_trials(cfg: Preset, sweep: dict) -> None:
    targeted.targeted(cfg, False)


NOTEBOOKS = tuple(GRIDS.names())  # sorted: the order make reproduce runs them
