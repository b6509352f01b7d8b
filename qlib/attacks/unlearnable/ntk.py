"""Closed-form kernels of an infinitely wide fully-connected Erf network, and the NTK gradient-descent
predictor: NTGA's surrogate (``ntga.py``) written in PyTorch instead of JAX's neural-tangents.

The network is ``depth`` blocks of (Dense, Erf) in the NTK parameterisation, NTGA's FNN surrogate
(``stax.serial(*[stax.Dense(512, W_std, b_std), stax.Erf()] * depth)``, no readout layer: its output is the
last Erf). With every weight and bias standard normal and n_l the width of the layer below,

    z¹ = W_std/√d · W¹x + b_std · b¹,    h^l = erf(z^l),    z^{l+1} = W_std/√n_l · W^{l+1} h^l + b_std · b^{l+1}.

As the widths grow, z^l tends to a Gaussian process with covariance Σ^l and the NTK of z^l tends to Θ^l:

    Σ¹ = W_std² · x·x'/d + b_std²,                         Θ¹ = Σ¹
    Σ^{l+1} = W_std² · E[erf(u) erf(v)] + b_std²,          Θ^{l+1} = Σ^{l+1} + W_std² · E[erf'(u) erf'(v)] · Θ^l
    E[erf(u) erf(v)]   = (2/π) · arcsin(2Σ_uv / √((1 + 2Σ_uu)(1 + 2Σ_vv)))
    E[erf'(u) erf'(v)] = (4/π) / √((1 + 2Σ_uu)(1 + 2Σ_vv) − 4Σ_uv²),         (u, v) ~ N(0, Σ^l).

The output h^depth has NNGP E[erf(u) erf(v)] and NTK E[erf'(u) erf'(v)] · Θ^depth under Σ^depth, as
neural-tangents' ``stax.Erf`` maps them. Everything is plain tensor algebra, differentiable in the inputs.
"""

import math

import torch

_TINY = 1e-300  # keeps (1 − e^{−cλ})/λ defined at λ = 0


def erf_kernels(x1: torch.Tensor, x2: torch.Tensor, depth: int, w_std2: float, b_std2: float):
    """(NNGP, NTK) of the ``depth``-block Erf network between the rows of ``x1`` and of ``x2`` (flattened)."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    x1, x2 = x1.flatten(1), x2.flatten(1)
    d = x1.shape[1]
    var1 = w_std2 * (x1 * x1).sum(1) / d + b_std2
    var2 = w_std2 * (x2 * x2).sum(1) / d + b_std2
    cov = w_std2 * (x1 @ x2.T) / d + b_std2
    ntk = cov
    for layer in range(depth):
        inv_scale = ((1 + 2 * var1)[:, None] * (1 + 2 * var2)[None, :]).rsqrt()
        ratio = 2 * cov * inv_scale
        nngp = (2 / math.pi) * torch.asin(ratio)
        # (1+2Σ_uu)(1+2Σ_vv) − 4Σ_uv² = (1+2Σ_uu)(1+2Σ_vv)·(1 − ratio²)
        dot = (4 / math.pi) * inv_scale * (1 - ratio**2).rsqrt()
        if layer == depth - 1:
            return nngp, dot * ntk
        var1 = w_std2 * (2 / math.pi) * torch.asin(2 * var1 / (1 + 2 * var1)) + b_std2
        var2 = w_std2 * (2 / math.pi) * torch.asin(2 * var2 / (1 + 2 * var2)) + b_std2
        cov = w_std2 * nngp + b_std2
        ntk = cov + w_std2 * dot * ntk


def _early_stop_gain(lam: torch.Tensor, c: float) -> torch.Tensor:
    """g(λ) = (1 − e^{−cλ⁺}) / λ, the spectral function of Θ⁻¹(I − e^{−cΘ})."""
    return -torch.expm1(-c * lam.clamp_min(0)) / lam.abs().clamp_min(_TINY)


class _EarlyStopInverse(torch.autograd.Function):
    """Θ⁻¹(I − e^{−cΘ}) of a symmetric Θ through its eigendecomposition (as neural-tangents computes it).

    The backward pass is the Daleckii–Krein formula, V [(g(λᵢ) − g(λⱼ))/(λᵢ − λⱼ) ∘ VᵀḠV] Vᵀ with g'(λᵢ) where
    eigenvalues (nearly) coincide: autograd through eigh divides by λᵢ − λⱼ and breaks on repeated eigenvalues
    (e.g. duplicate images in a block)."""

    @staticmethod
    def forward(ctx, theta: torch.Tensor, c: float) -> torch.Tensor:
        lam, vec = torch.linalg.eigh(theta)
        gain = _early_stop_gain(lam, c)
        ctx.save_for_backward(lam, vec, gain)
        ctx.c = c
        return (vec * gain) @ vec.T

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        lam, vec, gain = ctx.saved_tensors
        gap = lam[:, None] - lam[None, :]
        close = gap.abs() <= 1e-9 * lam.abs().max().clamp_min(_TINY)
        mid = ((lam[:, None] + lam[None, :]) / 2).clamp_min(_TINY)
        slope_at_mid = (ctx.c * torch.exp(-ctx.c * mid) - _early_stop_gain(mid, ctx.c)) / mid
        slope = torch.where(close, slope_at_mid, (gain[:, None] - gain[None, :]) / torch.where(close, 1.0, gap))
        inner = vec.T @ ((grad + grad.T) / 2) @ vec
        return vec @ (slope * inner) @ vec.T, None


def regularized(theta: torch.Tensor, diag_reg: float) -> torch.Tensor:
    """Θ + diag_reg · mean(diag Θ) · I, neural-tangents' relative diagonal regulariser."""
    return theta + diag_reg * theta.diagonal().mean() * torch.eye(len(theta), dtype=theta.dtype, device=theta.device)


def gd_mse_weights(
    theta_train: torch.Tensor, y_train: torch.Tensor, t: float, lr: float, diag_reg: float
) -> torch.Tensor:
    """A = Θ⁻¹(I − e^{−η t Θ / (n·C)}) Y, so that Θ(x_test, x_train) A is the output at time t of an infinitely
    wide network trained from f₀ = 0 by gradient descent on ½·mean‖f − Y‖² (neural-tangents'
    ``predict.gradient_descent_mse``, which divides time by Y's size n·C)."""
    c = lr * t / y_train.numel()
    solve = _EarlyStopInverse.apply(regularized(theta_train.double(), diag_reg), c)  # float64: eigh of a kernel
    return (solve @ y_train.double()).to(theta_train.dtype)
