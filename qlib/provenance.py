"""A report's footer: what a result was measured on: preset, code version, the machine (``qlib.machine``) and wall
time."""

import datetime
import subprocess
import time

from .data import PROJECT_ROOT
from .executors import threads_per_cell
from .machine import machine
from .presets import Preset


def git_commit() -> str:
    """HEAD's short hash, with ``+dirty`` when tracked files other than the reports (which a run rewrites as it
    goes) have changed; ``unknown`` outside a checkout."""
    try:
        run = lambda *a: subprocess.run(
            ["git", *a], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        commit = run("rev-parse", "--short", "HEAD")
        return commit + (
            "+dirty" if run("status", "--porcelain", "--untracked-files=no", "--", ".", ":!reports") else ""
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(cfg: Preset, started: float) -> dict:
    """A footer for a report; ``started`` is the ``time.time()`` the run began. Its wall time is this notebook's run:
    rendered from a filled cache (``qlib grid``), seconds."""
    return {
        "preset": cfg.preset,
        "dataset": cfg.dataset,
        "model": f"{cfg.model} (width {cfg.width})",
        "seeds": ", ".join(map(str, cfg.seeds)),
        "git commit": git_commit(),
        **machine(cfg.device),
        # every executor pins the threads per cell (qlib.pipeline.run); a cell computed elsewhere records its own
        "threads": f"{threads_per_cell()} per cell here (each cache entry records its own)",
        "finished": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall time": f"{time.time() - started:.0f} s",
    }
