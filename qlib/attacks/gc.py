"""Gradient Canceling (GC, Lu et al. 2023b), Eqs. (3)-(4).

Given target parameters ŵ, GC looks for poisons ν whose gradient cancels the clean one, so that ŵ is a
stationary point of training on μ + ν:

    argmin_ν ½‖∇_w ℓ(μ; ŵ) + ∇_w ℓ(ν; ŵ)‖²₂                              (Eq. (4))

- ℓ is the sum-reduced cross-entropy, as in the official code; the objective is reported in those units
  and the early stop (default: below 1, as in the paper) uses them.
- The gradient covers all parameters (``layers="all"``); ``layers="first"`` keeps only the first parameter
  tensor, as the official code does.
- ∇_w ℓ(μ; ŵ) is computed once. By default (``batchnorm="eval"``) the target runs in evaluation mode (BatchNorm
  uses its running statistics), so ŵ's gradient is that of the deployed model; GC-Q uses the same convention.
  Retraining follows the training-mode gradient instead (batch statistics): ``batchnorm="batch"`` cancels that one,
  every BatchNorm normalising with the statistics of the batch it sees (the clean gradient in batches of
  ``chunk`` clean images, each poison chunk on its own), its running statistics left as they are; dropout stays
  off. This approximates training's batches, in which poisons are mixed with clean images.
- Only the poison images move (labels stay those of their source images). The step is Adam (default) or
  plain gradient descent (``optimizer="gd"``, the official choice) with a cosine-decayed step size; images
  are projected after every step as the constraint mode says (``qlib.attacks.constraints``: ``bounds`` "image",
  [0, 1], the default, or "none", the official code's unclipped pixels; an optional ``norm``/``eps`` budget around
  each source image).
- The poison gradient is computed in chunks of ``chunk`` images, so the cost scales to ResNet-18 on a GPU:
  a first pass sums the chunks' gradients into G = ∇ℓ(μ) + ∇ℓ(ν); a second pass differentiates ⟨∇ℓ(chunk), G⟩
  with respect to each chunk's images, which is that chunk's share of ∇_x ½‖G‖².
"""

import copy
import math

import torch
import torch.nn.functional as nnf
from torch import nn
from tqdm import tqdm

from .. import devices
from ..artifacts import tensor_digest
from ..counters import UNITS, count, settings
from ..data import Dataset
from ..poison import PoisonSet, poison_count
from .base import ATTACKS, Needs, source_indices
from .constraints import check_constraints, project_
from .constraints import provenance as constraint_provenance

OPTIMIZERS = ("adam", "gd")
LAYERS = ("all", "first")
BATCHNORM_MODES = ("eval", "batch")


def batchnorm_mode(model: nn.Module, mode: str) -> nn.Module:
    """``model`` in evaluation mode (``"eval"``), or a copy whose BatchNorm layers normalise with batch statistics
    without updating their running ones (``"batch"``); anything else (dropout) stays in evaluation mode."""
    if mode not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm={mode!r}: allowed is one of {', '.join(BATCHNORM_MODES)}")
    model = model.eval()
    if mode == "eval":
        return model
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
            m.track_running_stats = False  # batch statistics, running buffers untouched
    return model


def gradient_parameters(model: nn.Module, layers: str) -> list[torch.Tensor]:
    if layers not in LAYERS:
        raise ValueError(f"unknown layers={layers!r}; valid: {', '.join(LAYERS)}")
    params = [p for p in model.parameters() if p.requires_grad]
    return params[:1] if layers == "first" else params


def clean_gradient(model: nn.Module, params, clean: Dataset, batch_size: int = 1000) -> list[torch.Tensor]:
    """∇_w ℓ(μ; w) of the sum-reduced cross-entropy, accumulated over batches."""
    device = params[0].device
    total = [torch.zeros_like(p) for p in params]
    for i in range(0, len(clean), batch_size):
        loss = nnf.cross_entropy(
            model(clean.x[i : i + batch_size].to(device)), clean.y[i : i + batch_size].to(device), reduction="sum"
        )
        for t, g in zip(total, torch.autograd.grad(loss, params)):
            t += g
    return total


def cancel_objective(
    model: nn.Module,
    params,
    g_clean,
    x: torch.Tensor,
    y: torch.Tensor,
    chunk: int,
    attack: str = "gc",
    with_grad: bool = True,
):
    """½‖g_clean + ∇_w ℓ((x, y); w)‖² and (``with_grad``) its gradient with respect to ``x`` (Eq. (4)); its poisons
    are counted as ``attack``'s unit. The first pass keeps the graph of its first chunk, which the second pass
    then uses before recomputing the others: the same numbers bit for bit, one chunk's forward and backward fewer
    per step (all of the first pass when the poisons fit in one chunk), and never more than one chunk's graph held."""
    G, kept = [g.clone() for g in g_clean], None
    for i in range(0, len(x), chunk):
        keep = with_grad and i == 0
        xc = x[i : i + chunk].detach().requires_grad_(True) if keep else x[i : i + chunk]
        loss = nnf.cross_entropy(model(xc), y[i : i + chunk], reduction="sum")
        g_chunk = torch.autograd.grad(loss, params, create_graph=keep)
        for t, g in zip(G, g_chunk):
            t += g.detach()
        if keep:
            kept = (xc, g_chunk)
    count(f"attack/{attack}", len(x))
    value = 0.5 * sum((t**2).sum() for t in G).item()
    if not with_grad:
        return value, None
    grad_x = torch.empty_like(x)
    for i in range(0, len(x), chunk):
        if i == 0:
            (xc, g_chunk), kept = kept, None
        else:
            xc = x[i : i + chunk].detach().requires_grad_(True)
            loss = nnf.cross_entropy(model(xc), y[i : i + chunk], reduction="sum")
            g_chunk = torch.autograd.grad(loss, params, create_graph=True)
        inner = sum((g * t).sum() for g, t in zip(g_chunk, G))
        (grad_x[i : i + chunk],) = torch.autograd.grad(inner, xc)
    return value, grad_x


def gradient_cancel(
    model: nn.Module,
    clean: Dataset,
    eps_d: float,
    seed: int,
    *,
    epochs: int,
    lr: float,
    optimizer: str,
    threshold: float,
    chunk: int,
    layers: str,
    bounds: str,
    norm: str | None,
    eps: float | None,
    batchnorm: str,
    device: str,
    progress: bool,
    attack: str,
    extra: dict,
) -> PoisonSet:
    """The GC loop shared by GC and GC-Q: ``model`` is the network whose gradient is cancelled."""
    check_constraints(bounds, norm, eps)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer={optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    if epochs < 1 or not lr > 0 or chunk < 1:
        raise ValueError(f"epochs, lr and chunk must be positive, got epochs={epochs}, lr={lr}, chunk={chunk}")
    dev = devices.resolve(device)
    model = batchnorm_mode(model.to(dev), batchnorm)
    params = gradient_parameters(model, layers)
    idx = source_indices(len(clean), poison_count(eps_d, len(clean)), seed)
    source = clean.x[idx].to(dev)
    x = source.clone().requires_grad_(True)
    y = clean.y[idx].to(dev)
    g_clean = clean_gradient(model, params, clean, 1000 if batchnorm == "eval" else chunk)
    opt = torch.optim.Adam([x], lr=lr) if optimizer == "adam" else torch.optim.SGD([x], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    history = []
    bar = tqdm(range(epochs), desc=attack, disable=not progress, leave=False)
    for _ in bar:
        value, grad_x = cancel_objective(model, params, g_clean, x, y, chunk, attack)
        history.append(value)
        bar.set_postfix(objective=f"{value:.4g}")
        if value < threshold or not math.isfinite(value):
            break
        x.grad = grad_x
        opt.step()
        sched.step()
        project_(x, source, bounds, norm, eps)
    else:
        history.append(cancel_objective(model, params, g_clean, x, y, chunk, attack, with_grad=False)[0])
    params_record = {
        "epochs": epochs,
        "lr": lr,
        "optimizer": optimizer,
        "threshold": threshold,
        "chunk": chunk,
        "layers": layers,
        "bounds": bounds,
        "norm": norm,
        "eps": eps,
        "batchnorm": batchnorm,
        **extra,
    }
    provenance = {
        "attack": attack,
        "params": params_record,
        "seed": seed,
        "labels": "kept",
        **constraint_provenance(bounds, norm, eps),
        "objective": {"initial": history[0], "final": history[-1], "steps": len(history) - 1},
    }
    return PoisonSet(x.detach().cpu(), y.cpu(), idx, eps_d, provenance)


@ATTACKS.register("gc", Needs(model="gradpc"))
def gc(
    clean: Dataset,
    eps_d: float,
    seed: int,
    *,
    target: nn.Module,
    epochs: int = 2000,
    lr: float = 0.01,
    optimizer: str = "adam",
    threshold: float = 1.0,
    chunk: int = 512,
    layers: str = "all",
    bounds: str = "image",
    norm: str | None = None,
    eps: float | None = None,
    batchnorm: str = "eval",
    device: str = "auto",
    progress: bool = False,
) -> PoisonSet:
    """GC, Eq. (4): poisons that make the full-precision ``target`` ŵ a stationary point of training on μ + ν."""
    return gradient_cancel(
        target,
        clean,
        eps_d,
        seed,
        epochs=epochs,
        lr=lr,
        optimizer=optimizer,
        threshold=threshold,
        chunk=chunk,
        layers=layers,
        bounds=bounds,
        norm=norm,
        eps=eps,
        batchnorm=batchnorm,
        device=device,
        progress=progress,
        attack="gc",
        extra={"target": tensor_digest(target.state_dict().values())},
    )


def cancel_units(attack):
    """The ``UNITS`` predictor of an attack that runs the GC loop (GC, GC-Q): poisons through one evaluation of
    Eq. (4) and its gradient (a forward, a backward and a double backward each), over the ``epochs`` steps and the
    final evaluation; fewer when the objective stops early below ``threshold``."""
    return lambda n, eps_d, params: (settings(attack, params)["epochs"] + 1) * poison_count(eps_d, n)


UNITS.register("gc")(cancel_units(gc))
