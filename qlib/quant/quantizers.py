"""Quantizer modules: weight quantizers (applied to a layer's latent weights w) and activation quantizers.

Every module maps a tensor to its quantized value F(·) in the forward pass and lets gradients through
B in the backward pass (Eq. (10)). Modules with a ``set_progress(t)`` method are told the fraction
``t`` ∈ [0, 1] of training done; ``qlib.train.fit`` calls it before every step.
"""

import math

import torch
from torch import nn

from .functions import P_Q, int_range, lsq, sign, sign_ede, sign_swish


def _absmax(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    if per_channel:
        return w.detach().abs().amax(dim=tuple(range(1, w.ndim)), keepdim=True)
    return w.detach().abs().amax()


class IntWeight(nn.Module):
    """b-bit weights, Eq. (8): F = P_Q with the symmetric scale s = max|w| / (2^(b−1)−1),
    B = 1_[−2^(b−1), 2^(b−1)−1](w/s)."""

    def __init__(self, bits: int, per_channel: bool = False):
        super().__init__()
        self.bits, self.per_channel = bits, per_channel
        self.lo, self.hi = int_range(bits)

    def scale(self, w: torch.Tensor) -> torch.Tensor:
        return (_absmax(w, self.per_channel) / self.hi).clamp_min(torch.finfo(w.dtype).tiny)

    def forward(self, w):
        return P_Q(w, self.scale(w), self.lo, self.hi)


@torch.no_grad()
def mse_step(w: torch.Tensor, bits: int, per_channel: bool, ratios: int = 100) -> torch.Tensor:
    """PTQ's step under LSQ: s = r·max|w|/Q_P for the clip ratio r in {1/ratios, 2/ratios, …, 1} that minimises
    ‖w − P_Q(w; s)‖² (Eq. (8)), per tensor or per output channel; on a tie the larger r (fewer weights clipped).
    r = 1 is the max-abs scale of ``IntWeight``, so this step is never larger and its error never larger."""
    lo, hi = int_range(bits)
    dims = tuple(range(1, w.ndim)) if per_channel else tuple(range(w.ndim))
    top = _absmax(w, per_channel) / hi
    step_at = lambda k: (top * (k / ratios)).clamp_min(torch.finfo(w.dtype).tiny)  # k = ratios: exactly max-abs
    error = lambda step: (w - P_Q(w, step, lo, hi)).pow(2).sum(dim=dims, keepdim=per_channel)
    best = step_at(ratios)
    best_err = error(best)
    for k in range(ratios - 1, 0, -1):
        step = step_at(k)
        err = error(step)
        better = err < best_err
        best, best_err = torch.where(better, step, best), torch.where(better, err, best_err)
    return best


class LSQWeight(nn.Module):
    """b-bit weights with a learned step s (LSQ, Esser et al. 2020): Eq. (8) with s an ``nn.Parameter``,
    F = s·⌊clip(w/s, −Q_N, Q_P)⌉ on the full signed grid Q_N = 2^(b−1), Q_P = 2^(b−1)−1; B = 1_[−Q_N, Q_P](w/s)
    for w (Eq. (10)), and LSQ's gradient for s scaled by g = 1/√(N_w·Q_P) (``functions.lsq``).

    s is one per tensor, or one per output channel with ``per_channel`` (N_w is the number of weights one step
    scales: the layer's, or one channel's). It starts at LSQ's 2·mean|w|/√Q_P of the ``weight`` it is built for
    (QAT), and ``calibrate`` sets it by PTQ's rule, :func:`mse_step`. ``qlib.train.fit`` trains it with the other
    parameters, weight decay included (LSQ's paper names no exemption for step sizes). Unlike ``IntWeight``'s max-abs
    scale, s can clip the largest weights, so B is not all ones.
    """

    def __init__(self, bits: int, weight: torch.Tensor, per_channel: bool = False):
        super().__init__()
        self.bits, self.per_channel = bits, per_channel
        self.lo, self.hi = int_range(bits)
        w = weight.detach()
        dims = tuple(range(1, w.ndim)) if per_channel else tuple(range(w.ndim))
        self.grad_scale = 1 / math.sqrt((w[0].numel() if per_channel else w.numel()) * self.hi)
        init = 2 * w.abs().mean(dim=dims, keepdim=per_channel) / math.sqrt(self.hi)
        self.step = nn.Parameter(init.clamp_min(torch.finfo(w.dtype).tiny))

    @torch.no_grad()
    def calibrate(self, w: torch.Tensor) -> None:
        """Set s by PTQ's rule, :func:`mse_step`, on the weights ``w``."""
        self.step.copy_(mse_step(w, self.bits, self.per_channel))

    def forward(self, w):
        return lsq(w, self.step, self.lo, self.hi, self.grad_scale)

    def extra_repr(self):
        return f"bits={self.bits}, per_channel={self.per_channel}"


class _OneBit(nn.Module):
    """Shared by BNN and BNN++: an optional mean|w| scale α (a constant for the backward pass)."""

    def __init__(self, scale: bool, per_channel: bool):
        super().__init__()
        self.scale, self.per_channel = scale, per_channel

    def alpha(self, w):
        if not self.scale:
            return 1.0
        dims = tuple(range(1, w.ndim)) if self.per_channel else tuple(range(w.ndim))
        return w.detach().abs().mean(dim=dims, keepdim=self.per_channel)


class SignWeight(_OneBit):
    """BNN weights: F = α·sign(w), B = 1_[−1, 1](w)."""

    def forward(self, w):
        return self.alpha(w) * sign(w)


class SignSwishWeight(_OneBit):
    """BNN++ weights: F = α·SS_β(w) in training and α·sign(w) in evaluation; B = SS_β'(w) in both.

    β rises geometrically from ``beta[0]`` to ``beta[1]`` over training, so SS_β tends to sign.
    """

    def __init__(self, scale: bool, per_channel: bool, beta: tuple[float, float]):
        super().__init__(scale, per_channel)
        self.beta_range = beta
        self.beta = beta[0]

    def set_progress(self, t: float) -> None:
        b0, b1 = self.beta_range
        self.beta = b0 * (b1 / b0) ** min(max(t, 0.0), 1.0)

    def forward(self, w):
        return self.alpha(w) * sign_swish(w, self.beta, hard=not self.training)


class IntActivation(nn.Module):
    """b-bit activations with a data-calibrated scale (Eq. (8) applied to activations).

    The scale comes from a running max of |x|: an exponential moving average during QAT training, the
    plain maximum while ``calibrating`` (PTQ), and frozen in evaluation. The grid is unsigned,
    [0, 2^b−1], when every calibration input was non-negative (after a ReLU), else signed.

    Scales are set by clean data only: ``observed_rows`` (a bool per row of the batch, set by ``qlib.train.fit``)
    names the rows that may move them; a batch without such a row leaves them as they are. So an appended
    poison, unbounded or not, cannot set a scale; it is quantized with the scale clean data gave.
    """

    def __init__(self, bits: int, momentum: float = 0.1):
        super().__init__()
        self.bits, self.momentum = bits, momentum
        self.calibrating = False
        self.observed_rows: torch.Tensor | None = None
        self.register_buffer("running_max", torch.zeros(()))
        self.register_buffer("running_min", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def _observe(self, x):
        if self.observed_rows is not None:
            x = x[self.observed_rows]
            if not len(x):
                return
        bmax, bmin = x.detach().abs().amax().float(), x.detach().amin().float()
        if not self.seen:
            self.running_max.copy_(bmax)
            self.seen.fill_(True)
        elif self.calibrating:
            self.running_max.copy_(torch.maximum(self.running_max, bmax))
        else:
            self.running_max.lerp_(bmax, self.momentum)
        self.running_min.copy_(torch.minimum(self.running_min, bmin))

    def forward(self, x):
        if self.training or self.calibrating:
            self._observe(x)
        elif not self.seen:
            raise RuntimeError("activation quantizer used before calibration: run ptq(..., calib=data) or train first")
        lo, hi = int_range(self.bits, signed=bool(self.running_min < 0))
        s = (self.running_max / hi).clamp_min(torch.finfo(torch.float32).tiny)
        return P_Q(x.float(), s, lo, hi).to(x.dtype)  # the grid in float32 under bf16 autocast too (qlib.numerics)

    def extra_repr(self):
        return f"bits={self.bits}, momentum={self.momentum}"


class SignActivation(nn.Module):
    """1-bit activation for BNN: F = sign, B = 1_[−1, 1]. It takes the place of a ReLU (Hubara et al. 2016)."""

    def forward(self, x):
        return sign(x)


class SignSwishActivation(SignSwishWeight):
    """1-bit activation for BNN++: SS_β in training, sign in evaluation, B = SS_β'. It takes the place of a ReLU."""

    def __init__(self, beta: tuple[float, float]):
        super().__init__(scale=False, per_channel=False, beta=beta)


class AdaBinWeight(nn.Module):
    """AdaBin weights (Tu et al. 2022, "weight equalization"): the adaptive binary set {β_w − α_w, β_w + α_w} per
    output channel, F(w) = α_w·sign((w − β_w)/α_w) + β_w with β_w = mean(w) and α_w = ‖w − β_w‖₂/√n (n weights
    per channel), so that F(w) has w's mean and standard deviation when half of w lies above its mean.

    As in the official code, α_w and β_w are functions of w in the backward pass too (not constants), and B is
    IR-Net's EDE k·t·(1 − tanh²(t·x)) at x = (w − β_w)/α_w, with t raised geometrically from 10⁻³ to 10 over
    training and k = max(1/t, 1) (the official code steps t per epoch; ``set_progress`` moves it per step).
    Like BNN++'s β, t is a plain attribute: it is not in the state dict, so a loaded model starts at t = 10⁻³.
    """

    T_RANGE = (1e-3, 10.0)

    def __init__(self):
        super().__init__()
        self.t = self.T_RANGE[0]

    def set_progress(self, p: float) -> None:
        t0, t1 = self.T_RANGE
        self.t = t0 * (t1 / t0) ** min(max(p, 0.0), 1.0)

    @staticmethod
    def center_distance(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(α_w, β_w) per output channel, shaped to broadcast against w."""
        dims = tuple(range(1, w.ndim))
        beta = w.mean(dim=dims, keepdim=True)
        var = (w - beta).pow(2).mean(dim=dims, keepdim=True)
        return var.clamp_min(torch.finfo(w.dtype).tiny).sqrt(), beta  # clamp: a constant channel gets α = 0⁺, not NaN

    def forward(self, w):
        alpha, beta = self.center_distance(w)
        return alpha * sign_ede((w - beta) / alpha, max(1 / self.t, 1.0), self.t) + beta

    def extra_repr(self):
        return f"t={self.t:.4g}"


class Maxout(nn.Module):
    """AdaBin's nonlinearity (Tu et al. 2022): f(x) = γ⁺·ReLU(x) − γ⁻·ReLU(−x) with learnable per-channel γ⁺
    (init 1) and γ⁻ (init 0.25), as in the official code. Channels are dimension 1 (conv and linear inputs)."""

    def __init__(self, channels: int, pos_init: float = 1.0, neg_init: float = 0.25):
        super().__init__()
        self.gamma_pos = nn.Parameter(torch.full((channels,), pos_init))
        self.gamma_neg = nn.Parameter(torch.full((channels,), neg_init))

    def forward(self, x):
        if x.ndim < 2 or x.shape[1] != len(self.gamma_pos):
            raise ValueError(f"Maxout has {len(self.gamma_pos)} channels but got an input of shape {tuple(x.shape)}")
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return self.gamma_pos.view(shape) * torch.relu(x) - self.gamma_neg.view(shape) * torch.relu(-x)

    def extra_repr(self):
        return f"channels={len(self.gamma_pos)}"


class AdaBinActivation(nn.Module):
    """AdaBin 1-bit activation (Tu et al. 2022, "gradient-based optimization for activations"): the learnable
    binary set {β_a − α_a, β_a + α_a} of one layer, F(a) = α_a·sign((a − β_a)/α_a) + β_a, with α_a = 1 and
    β_a = 0 at the start (the official code's initialisation).

    With the BNN STE for sign (B = 1_[−1, 1], see ``sign``) autograd gives, for x = (a − β_a)/α_a,
    ∂F/∂a = 1_{|x| ≤ 1}, ∂F/∂α_a = sign(x) − x·1_{|x| ≤ 1} and ∂F/∂β_a = 1_{|x| > 1} (= 0 inside, 1 outside).
    The official code differs in two ways: it returns α_a·(sign(x) + β_a), and its B is Bi-Real's ApproxSign.
    """

    def __init__(self):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.beta = nn.Parameter(torch.tensor(0.0))

    def forward(self, a):
        return self.alpha * sign((a - self.beta) / self.alpha) + self.beta
