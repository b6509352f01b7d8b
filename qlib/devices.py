"""Where computation happens: one function, ``resolve``, turns a preset's ``device`` into a ``torch.device``.

Every model that qlib trains, loads from the cache or builds to fill (GradPC's ŵ), and every tensor an attack or a
table computes with, is put on ``resolve(cfg.device)``. Data sets and poison sets stay in CPU memory (they are the
artifacts; batches move to the device as they are used). Tests point ``resolve`` at the ``meta`` device to see that
nothing is left behind on the CPU, which a CPU-only machine could not tell from ``cpu:0``.
"""

import torch
from torch import nn


def resolve(device: str = "auto") -> torch.device:
    """``auto``: the first CUDA device when there is one, else the CPU; anything else as torch reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def place(model: nn.Module, device: str = "auto") -> nn.Module:
    """``model`` moved, in place, to ``resolve(device)``."""
    return model.to(resolve(device))


def of(model: nn.Module) -> torch.device:
    """The device ``model``'s parameters are on."""
    return next(model.parameters()).device
