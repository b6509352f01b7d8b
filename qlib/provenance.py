"""What a result was measured on: preset, code version, software, hardware and wall time."""

import datetime
import platform
import subprocess
import time

import torch

from .data import PROJECT_ROOT
from .presets import Preset
from .train import resolve_device


def git_commit() -> str:
    """HEAD's short hash, with ``+dirty`` when tracked files other than the reports (which a run rewrites as it
    goes) have changed; ``unknown`` outside a checkout."""
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        commit = run("rev-parse", "--short", "HEAD")
        return commit + ("+dirty" if run("status", "--porcelain", "--untracked-files=no", "--", ".", ":!reports") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name(device: str = "auto") -> str:
    dev = resolve_device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU: {cpu}, {torch.get_num_threads()} threads"


def provenance(cfg: Preset, started: float) -> dict:
    """A footer for a report; ``started`` is the ``time.time()`` the run began."""
    return {
        "preset": cfg.preset,
        "dataset": cfg.dataset,
        "model": f"{cfg.model} (width {cfg.width})",
        "seeds": ", ".join(map(str, cfg.seeds)),
        "git commit": git_commit(),
        "torch": torch.__version__,
        "device": device_name(cfg.device),
        "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall time": f"{time.time() - started:.0f} s",
    }
