"""The machine a result was computed on: the CPU and torch's CPU kernels, threads, torch, the device and the numeric
policy. Every cache entry records it (``qlib.cache``), and every report's footer shows it (``qlib.provenance``)."""

import os
import platform

import torch

from . import devices, numerics


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine(device: str = "auto") -> dict:
    """What a float result depends on besides code, inputs and seed: the CPU and torch's CPU kernels (capability,
    oneDNN's cap if set, threads), the torch version, the device and the numeric policy in force. A record, not a cache
    key: on another CPU the same seed gives other last bits, and training turns them into other numbers (README,
    "Determinism")."""
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
