"""TGDA (Lu et al. 2022) and TGDA-Q (Appendix B, Eqs. (11)-(14)): total gradient descent ascent.

The poisons ν lead, the model w follows. With ℓ₁ = ℓ(μ̃; w), the loss on a clean validation split, and
ℓ₂ = ℓ(μ + ν; w), the training loss, each leader step ascends the total derivative

    D_ν ℓ₁ = ∇_ν ℓ₁ − ∇_{νw} ℓ₂ · (∇_{ww} ℓ₂)⁻¹ · ∇_w ℓ₁,   with ∇_ν ℓ₁ = 0 here      (Eq. (11))

and the follower then takes ``follower_steps`` plain gradient steps on ℓ₂ (Eq. (12)). (∇_{ww} ℓ₂ + λI)⁻¹∇_w ℓ₁
is solved by conjugate gradient on the normal equations, two Hessian-vector products per iteration, as in
the official code (16 iterations, λ = 0 by default). As there, each clean batch is split: 30% is the
validation batch μ̃ for ℓ₁ and the rest, with all poisons, forms ℓ₂. The model stays in evaluation mode
(BatchNorm running statistics fixed), as for GC. Only the images move; labels are the source images'. After each
leader step the poisons are projected as the constraint mode says (``qlib.attacks.constraints``: [0, 1] by default,
unbounded with ``bounds="none"`` as in the official code, optionally within a ``norm``/``eps`` budget of the source).

The leader's step: the official code ascends x ← x + η D_ν ℓ₁ with η = 0.01 (``leader_optimizer="gd"``), but
there x is the output of a generator network. On the pixels themselves D_ν ℓ₁ of the mean-reduced losses is
O(1/N) per pixel: measured on the ``cpu`` preset, three such steps moved the poisons by 6e-7 on average (max
7e-5), so 200 of them leave the clean copies unchanged. The default is therefore Adam ascent on the pixels
(``leader_optimizer="adam"``, step ``leader_lr`` in pixel units), the same scale-free choice as GC's.

TGDA-Q (Eqs. (13)-(14)) runs the same loop on the QAT network of a scheme: the follower's steps are QAT steps
(F forward, B backward) and the leader's derivative is taken through F and B.
"""

import copy

import torch
import torch.nn.functional as nnf
from torch import nn
from tqdm import tqdm

from .. import devices
from ..artifacts import tensor_digest
from ..counters import UNITS, count, settings
from ..data import Dataset
from ..poison import PoisonSet, poison_count
from ..quant import QuantScheme, calibrate, quantize_modules
from .base import ATTACKS, Needs, source_indices
from .constraints import check_constraints, project_
from .constraints import provenance as constraint_provenance


def _dot(a, b):
    return sum((x * y).sum() for x, y in zip(a, b))


def conjugate_gradient(matvec, b: list[torch.Tensor], iters: int, tol: float = 1e-20) -> list[torch.Tensor]:
    """Solve A x = b for symmetric positive semi-definite A given as ``matvec``; tensors as lists."""
    x = [torch.zeros_like(t) for t in b]
    r = [t.clone() for t in b]
    p = [t.clone() for t in b]
    rr = _dot(r, r)
    for _ in range(iters):
        if rr <= tol:
            break
        Ap = matvec(p)
        alpha = rr / _dot(p, Ap).clamp_min(1e-30)
        x = [xi + alpha * pi for xi, pi in zip(x, p)]
        r = [ri - alpha * ai for ri, ai in zip(r, Ap)]
        rr_new = _dot(r, r)
        p = [ri + (rr_new / rr) * pi for ri, pi in zip(r, p)]
        rr = rr_new
    return x


def pieces(train_x, train_y, x, y, chunk: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The training batch and the poisons of ℓ₂ in pieces of at most ``chunk`` images each."""
    return [(train_x[i : i + chunk], train_y[i : i + chunk]) for i in range(0, len(train_y), chunk)] + [
        (x[i : i + chunk], y[i : i + chunk]) for i in range(0, len(y), chunk)
    ]


def total_derivative(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    train_x,
    train_y,
    val_x,
    val_y,
    cg_iters: int = 16,
    damping: float = 0.0,
    chunk: int | None = None,
) -> torch.Tensor:
    """D_ν ℓ₁ = −∇_{νw} ℓ₂ (∇_{ww} ℓ₂ + λI)⁻¹ ∇_w ℓ₁ for poison images ``x`` (Eq. (11)).

    ℓ₂ is a sum over pieces of at most ``chunk`` images (None: one piece for the batch, one for the poisons). With
    those two pieces one graph of ∇_w ℓ₂ serves every Hessian-vector product; with more, each product rebuilds the
    graph of one piece at a time, so memory holds one piece's double-backward graph whatever the number of
    poisons, at the price of a forward and backward per piece per product."""
    params = [p for p in model.parameters() if p.requires_grad]
    x = x.detach().requires_grad_(True)
    g1 = torch.autograd.grad(nnf.cross_entropy(model(val_x), val_y), params)
    n = len(train_y) + len(y)
    parts = pieces(train_x, train_y, x, y, chunk or max(len(train_y), len(y)))

    def gradient(part):  # ∇_w of the pieces' share of ℓ₂, differentiable
        loss = sum(nnf.cross_entropy(model(px), py, reduction="sum") for px, py in part) / n
        return torch.autograd.grad(loss, params, create_graph=True)

    whole = gradient(parts) if len(parts) <= 2 else None
    graphs = lambda: [whole] if whole is not None else (gradient([part]) for part in parts)

    def hessian(v):
        hv = [torch.zeros_like(p) for p in params]
        for g2 in graphs():
            for h, t in zip(hv, torch.autograd.grad(_dot(g2, v), params, retain_graph=whole is not None)):
                h += t
        return [h + damping * vi for h, vi in zip(hv, v)]

    # normal equations HᵀH v = Hᵀ g₁: well posed even where the network's Hessian is indefinite
    v = [t.detach() for t in conjugate_gradient(lambda u: hessian(hessian(u)), hessian(list(g1)), cg_iters)]
    if whole is not None:
        (d,) = torch.autograd.grad(_dot(whole, v), x)
        return -d
    d = torch.zeros_like(x)
    for part in parts[len(parts) - -(-len(y) // chunk) :]:  # the poisons' pieces: only they depend on x
        d += torch.autograd.grad(_dot(gradient([part]), v), x)[0]
    return -d


def follower_step(model: nn.Module, params, train_x, train_y, x, y, lr: float, chunk: int | None) -> None:
    """One gradient step of the weights on ℓ₂ (Eq. (12)), its gradient summed over pieces of ``chunk`` images."""
    if chunk is None or len(train_y) + len(y) <= chunk:
        loss = nnf.cross_entropy(model(torch.cat([train_x, x])), torch.cat([train_y, y]))
        grads = torch.autograd.grad(loss, params)
    else:
        n, grads = len(train_y) + len(y), [torch.zeros_like(p) for p in params]
        for px, py in pieces(train_x, train_y, x.detach(), y, chunk):
            for t, gp in zip(grads, torch.autograd.grad(nnf.cross_entropy(model(px), py, reduction="sum") / n, params)):
                t += gp
    with torch.no_grad():
        for p, gp in zip(params, grads):
            p -= lr * gp


LEADER_OPTIMIZERS = ("adam", "gd")


def _tgda(
    model: nn.Module,
    clean: Dataset,
    eps_d: float,
    seed: int,
    *,
    epochs: int,
    leader_lr: float,
    leader_optimizer: str,
    follower_steps: int,
    follower_lr: float,
    batch_size: int,
    val_fraction: float,
    cg_iters: int,
    damping: float,
    chunk: int | None,
    bounds: str,
    norm: str | None,
    eps: float | None,
    device: str,
    progress: bool,
    attack: str,
    extra: dict,
) -> PoisonSet:
    check_constraints(bounds, norm, eps)
    if (
        epochs < 1
        or follower_steps < 0
        or batch_size < 2
        or not 0 < val_fraction < 1
        or cg_iters < 1
        or (chunk is not None and chunk < 1)
    ):
        raise ValueError(
            f"bad TGDA arguments: epochs={epochs}, follower_steps={follower_steps}, batch_size={batch_size}, "
            f"val_fraction={val_fraction} (must be in (0, 1)), cg_iters={cg_iters}, chunk={chunk} (≥ 1 or None)"
        )
    if not leader_lr > 0 or not follower_lr > 0 or damping < 0:
        raise ValueError(f"leader_lr={leader_lr} and follower_lr={follower_lr} must be positive, damping={damping} ≥ 0")
    if leader_optimizer not in LEADER_OPTIMIZERS:
        raise ValueError(f"unknown leader_optimizer={leader_optimizer!r}; valid: {', '.join(LEADER_OPTIMIZERS)}")
    dev = devices.resolve(device)
    model = model.to(dev).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    idx = source_indices(len(clean), poison_count(eps_d, len(clean)), seed)
    source, y = clean.x[idx].to(dev), clean.y[idx].to(dev)
    x = source.clone()
    adam = torch.optim.Adam([x], lr=leader_lr, maximize=True) if leader_optimizer == "adam" else None
    g = torch.Generator().manual_seed(seed)
    n_val = max(1, round(val_fraction * batch_size))
    val_losses = []
    for _ in tqdm(range(epochs), desc=attack, disable=not progress, leave=False):
        batch = torch.randperm(len(clean), generator=g)[:batch_size]
        val, tr = batch[:n_val], batch[n_val:]
        tx, ty, vx, vy = clean.x[tr].to(dev), clean.y[tr].to(dev), clean.x[val].to(dev), clean.y[val].to(dev)
        d = total_derivative(model, x, y, tx, ty, vx, vy, cg_iters, damping, chunk)
        if adam is None:  # Eq. (11): ascend the validation loss
            x += leader_lr * d
        else:
            x.grad = d
            adam.step()
        project_(x, source, bounds, norm, eps)
        for _ in range(follower_steps):  # Eq. (12) (Eq. (14) on a QAT network)
            follower_step(model, params, tx, ty, x, y, follower_lr, chunk)
        count(f"attack/{attack}", len(tr) + len(y))
        with torch.no_grad():
            val_losses.append(nnf.cross_entropy(model(vx), vy).item())
    record = {
        "epochs": epochs,
        "leader_lr": leader_lr,
        "leader_optimizer": leader_optimizer,
        "follower_steps": follower_steps,
        "follower_lr": follower_lr,
        "batch_size": batch_size,
        "val_fraction": val_fraction,
        "cg_iters": cg_iters,
        "damping": damping,
        "chunk": chunk,
        "bounds": bounds,
        "norm": norm,
        "eps": eps,
        **extra,
    }
    provenance = {
        "attack": attack,
        "params": record,
        "seed": seed,
        "labels": "kept",
        **constraint_provenance(bounds, norm, eps),
        "validation_loss": {"first": val_losses[0], "last": val_losses[-1]},
    }
    return PoisonSet(x.cpu(), y.cpu(), idx, eps_d, provenance)


@ATTACKS.register("tgda", Needs(model="trained"))
def tgda(
    clean: Dataset,
    eps_d: float,
    seed: int,
    *,
    model: nn.Module,
    epochs: int = 200,
    leader_lr: float = 0.01,
    leader_optimizer: str = "adam",
    follower_steps: int = 20,
    follower_lr: float = 0.1,
    batch_size: int = 1000,
    val_fraction: float = 0.3,
    cg_iters: int = 16,
    damping: float = 0.0,
    chunk: int | None = None,
    bounds: str = "image",
    norm: str | None = None,
    eps: float | None = None,
    device: str = "auto",
    progress: bool = False,
) -> PoisonSet:
    """TGDA in full precision, Eqs. (11)-(12); ``model`` (the surrogate's starting weights, usually w_c) is copied, not
    changed. The defaults are the official code's, but for the leader's step (see the module's docstring)."""
    extra = {"model": tensor_digest(model.state_dict().values())}
    return _tgda(
        copy.deepcopy(model),
        clean,
        eps_d,
        seed,
        epochs=epochs,
        leader_lr=leader_lr,
        leader_optimizer=leader_optimizer,
        follower_steps=follower_steps,
        follower_lr=follower_lr,
        batch_size=batch_size,
        val_fraction=val_fraction,
        cg_iters=cg_iters,
        damping=damping,
        chunk=chunk,
        bounds=bounds,
        norm=norm,
        eps=eps,
        device=device,
        progress=progress,
        attack="tgda",
        extra=extra,
    )


@ATTACKS.register("tgda_q", Needs(model="trained", scheme="attacked", settings="tgda"))
def tgda_q(
    clean: Dataset,
    eps_d: float,
    seed: int,
    *,
    model: nn.Module,
    scheme: QuantScheme,
    epochs: int = 200,
    leader_lr: float = 0.01,
    leader_optimizer: str = "adam",
    follower_steps: int = 20,
    follower_lr: float = 0.1,
    batch_size: int = 1000,
    val_fraction: float = 0.3,
    cg_iters: int = 16,
    damping: float = 0.0,
    chunk: int | None = None,
    bounds: str = "image",
    norm: str | None = None,
    eps: float | None = None,
    device: str = "auto",
    progress: bool = False,
) -> PoisonSet:
    """TGDA-Q, Eqs. (13)-(14): TGDA on the QAT network of ``scheme`` (activation scales, if any, calibrated on μ)."""
    if scheme.is_fp:
        raise ValueError("TGDA-Q needs a quantization scheme; for full precision use TGDA")
    qat = quantize_modules(model, scheme).eval()
    calibrate(qat, clean)
    extra = {"model": tensor_digest(model.state_dict().values()), "scheme": scheme.name}
    return _tgda(
        qat,
        clean,
        eps_d,
        seed,
        epochs=epochs,
        leader_lr=leader_lr,
        leader_optimizer=leader_optimizer,
        follower_steps=follower_steps,
        follower_lr=follower_lr,
        batch_size=batch_size,
        val_fraction=val_fraction,
        cg_iters=cg_iters,
        damping=damping,
        chunk=chunk,
        bounds=bounds,
        norm=norm,
        eps=eps,
        device=device,
        progress=progress,
        attack="tgda_q",
        extra=extra,
    )


@UNITS.register("tgda")
def tgda_units(n: int, eps_d: float, params: dict) -> int:
    """Images in ℓ₂ per leader step (the training part of the batch and every poison; each goes through the
    2·cg_iters + 1 Hessian-vector products and the follower steps), summed over the ``epochs`` leader steps."""
    p = settings(tgda, params)
    n_val = max(1, round(p["val_fraction"] * p["batch_size"]))
    batch = min(p["batch_size"], n)
    return p["epochs"] * (batch - min(n_val, batch) + poison_count(eps_d, n))


UNITS.register("tgda_q")(tgda_units)
