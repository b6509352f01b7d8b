"""Target parameters for GC: gradient-based parameter corruption (GradPC, Sun et al. 2020) and PAQ (Section 3).

GradPC ascends the training loss from the clean parameters w_c with gradient steps normalised by their
global L2 norm (step ``lr``, one pass over the data by default), projecting the accumulated perturbation
onto the L2 ball whose radius makes ε_w = ‖ŵ − w_c‖²₂ (the paper's ε_w is the *squared* norm, Table 2).
BatchNorm layers stay in evaluation mode throughout: the loss is the deployed model's, and running
statistics are not changed. PAQ (post-attack quantization) is ŵ* = F(ŵ) under a scheme: PTQ of ŵ, Eq. (8).
"""

import copy
import math

import torch
import torch.nn.functional as nnf
from torch import nn

from ..counters import UNITS, count
from ..data import Dataset
from ..quant import QuantScheme, ptq


def squared_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """‖a − b‖²₂ over a list of tensors (ε_w when a = ŵ and b = w_c)."""
    return sum(((x.detach().float() - y.detach().float()) ** 2).sum().item() for x, y in zip(a, b))


def gradpc(
    model: nn.Module,
    train: Dataset,
    eps_w: float = 0.5,
    lr: float = 1.0,
    epochs: int = 1,
    batch_size: int = 128,
    seed: int = 0,
) -> nn.Module:
    """ŵ: a copy of ``model`` (w_c) whose parameters are corrupted within ε_w = ‖ŵ − w_c‖²₂ ≤ ``eps_w``."""
    if not eps_w > 0:
        raise ValueError(f"eps_w={eps_w!r} must be positive (it is the squared L2 budget ‖ŵ − w_c‖²)")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be ≥ 1, got {epochs}, {batch_size}")
    target = copy.deepcopy(model).eval()
    device = next(target.parameters()).device
    params = [p for p in target.parameters() if p.requires_grad]
    w_c = [p.detach().clone() for p in params]
    radius = math.sqrt(eps_w)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(train), generator=g)
        for i in range(0, len(train), batch_size):
            idx = perm[i : i + batch_size]
            count("attack/gradpc", len(idx))
            loss = nnf.cross_entropy(target(train.x[idx].to(device)), train.y[idx].to(device))
            grads = torch.autograd.grad(loss, params)
            norm = torch.sqrt(sum((gr**2).sum() for gr in grads)).clamp_min(1e-12)
            with torch.no_grad():
                for p, gr in zip(params, grads):
                    p.add_(gr, alpha=lr / norm.item())
                delta = math.sqrt(squared_distance(params, w_c))
                if delta > radius:
                    for p, c in zip(params, w_c):
                        p.copy_(c + (p - c) * (radius / delta))
    return target


@UNITS.register("gradpc")
def gradpc_units(n: int, eps_d: float, params: dict) -> int:
    """Images GradPC takes a gradient step on: ``epochs`` passes over the ``n`` training images (``eps_d`` unused)."""
    return params.get("epochs", 1) * n


def paq(target: nn.Module, scheme: QuantScheme) -> nn.Module:
    """Post-attack quantization: ŵ* = F(ŵ), the target made discrete under ``scheme`` (weights only) by PTQ: P_Q
    with the max-abs scale (int), or, under LSQ, with each layer's step set on ŵ by the MSE rule
    (``quant.quantizers.mse_step``)."""
    if scheme.a_bits is not None:
        raise ValueError(f"PAQ quantizes weights only; scheme {scheme.name!r} also quantizes activations")
    return ptq(target, scheme)
