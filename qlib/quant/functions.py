"""Forward quantizers F with their backward quantizers B (Appendix A.2, Eqs. (8)-(10)), as autograd functions.

Each ``forward`` computes F; each ``backward`` multiplies the incoming gradient by B, written with
differentiable tensor ops so that attacks can differentiate through it again (``create_graph=True``).
"""

import torch


def int_range(bits: int, signed: bool = True) -> tuple[int, int]:
    """The integer grid of Q: [−2^(b−1), 2^(b−1)−1] signed, [0, 2^b−1] unsigned."""
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


class _PQ(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, s, lo, hi):
        q = w / s
        ctx.save_for_backward((q >= lo) & (q <= hi))
        return s * q.clamp(lo, hi).round()

    @staticmethod
    def backward(ctx, g):
        (inside,) = ctx.saved_tensors
        return g * inside, None, None, None


def P_Q(w: torch.Tensor, s: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Eq. (8): w* = s·⌊clip(w/s, lo, hi)⌉, with B = 1_[lo, hi](w/s) (clipped straight-through, Eq. (10)).

    ``s`` is treated as a constant: no gradient flows to the scale.
    """
    return _PQ.apply(w, s.detach(), lo, hi)


def lsq(w: torch.Tensor, s: torch.Tensor, lo: int, hi: int, g: float) -> torch.Tensor:
    """LSQ (Esser et al. 2020): Eq. (8) with a learned step s, F = s·⌊clip(w/s, lo, hi)⌉, and the backward
    B = 1_[lo, hi](w/s) for w (Eq. (10)); for s, LSQ's ∂F/∂s = ⌊w/s⌉ − w/s inside the grid and lo or hi outside,
    multiplied by the gradient scale ``g``.

    Written with differentiable ops (round and the scale of s are straight-through), so attacks can
    differentiate through it again; both are added as exact zeros, so F is exactly on the grid of s. The grid's
    ends count as inside, as in ``P_Q`` (``torch.clamp`` would pass no gradient there).
    """
    s = s.detach() + (g * s - (g * s).detach())  # the value of s, the gradient g·∂/∂s
    q = w / s
    q = torch.where((q >= lo) & (q <= hi), q, q.detach().clamp(lo, hi))
    return s * (q.round().detach() + (q - q.detach()))


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1)


def sign(x: torch.Tensor) -> torch.Tensor:
    """BNN (Hubara et al. 2016): F = sign (with sign(0) = +1), B = 1_[−1, 1]."""
    return _SignSTE.apply(x)


def signswish(x: torch.Tensor, beta: float) -> torch.Tensor:
    """SS_β(x) = 2σ(βx)[1 + βx(1 − σ(βx))] − 1 (BNN++, Darabi et al. 2019)."""
    s = torch.sigmoid(beta * x)
    return 2 * s * (1 + beta * x * (1 - s)) - 1


def signswish_grad(x: torch.Tensor, beta: float) -> torch.Tensor:
    """SS_β'(x) = β(2 − βx·tanh(βx/2)) / (1 + cosh(βx)); SS_β'(0) = β. Vanishes (not NaN) for large |βx|."""
    bx = beta * x
    return beta * (2 - bx * torch.tanh(bx / 2)) / (1 + torch.cosh(bx))


class _SignSwish(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, beta, hard):
        ctx.save_for_backward(x)
        ctx.beta = beta
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype) if hard else signswish(x, beta)

    @staticmethod
    def backward(ctx, g):
        # SS_β' in its one-sigmoid form 2βσ(1−σ)(2 + βx(1−2σ)), σ = σ(βx): equal to signswish_grad, cheaper
        (x,) = ctx.saved_tensors
        bx = ctx.beta * x
        s = torch.sigmoid(bx)
        return g * (2 * ctx.beta * s * (1 - s) * (2 + bx * (1 - 2 * s))), None, None


def sign_swish(x: torch.Tensor, beta: float, hard: bool = False) -> torch.Tensor:
    """BNN++: F = SS_β during training (``hard=False``) or sign at evaluation (``hard=True``); B = SS_β' in both."""
    return _SignSwish.apply(x, beta, hard)


class _SignEDE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, k, t):
        ctx.save_for_backward(x)
        ctx.k, ctx.t = k, t
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (ctx.k * ctx.t * (1 - torch.tanh(ctx.t * x) ** 2)), None, None


def sign_ede(x: torch.Tensor, k: float, t: float) -> torch.Tensor:
    """F = sign (sign(0) = +1), B(x) = k·t·(1 − tanh²(t·x)): the error decay estimator of IR-Net (Qin et al.
    2020), which AdaBin's official code uses for weights (k and t are constants)."""
    return _SignEDE.apply(x, k, t)
