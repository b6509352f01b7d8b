"""What a result was measured on: preset, code version, software, hardware (CPU, its kernels, threads) and wall time."""

import datetime
import os
import platform
import subprocess
import time

import torch

from . import devices, numerics
from .data import PROJECT_ROOT
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


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine(device: str = "auto") -> dict:
    """What a float result depends on besides code, inputs and seed: the CPU and torch's CPU kernels (capability,
    oneDNN's cap if set, threads), the torch version, the device and the numeric policy in force. A record, not a cache key: on another CPU the
    same seed gives other last bits, and training turns them into other numbers (README, "Determinism")."""
    dev = devices.resolve(device)
    record = {
        "cpu": cpu_model(),
        "cpu capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "numerics": numerics.policy(dev),
    }
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        record["ONEDNN_MAX_CPU_ISA"] = os.environ["ONEDNN_MAX_CPU_ISA"]
    return record


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
        # every cell ran with the preset's threads, whichever process computed it (qlib.pipeline.run)
        "threads": f"{cfg.threads} per cell (each cache entry records its own)",
        "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall time": f"{time.time() - started:.0f} s",
    }
