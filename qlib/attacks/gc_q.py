"""GC-Q, Gradient Canceling with Quantization (Section 3, Eq. (5)), with the two switches of Table 4's ablation.

    argmin_ν ½‖B∇_w ℓ(μ; ŵ*) + B∇_w ℓ(ν; ŵ*)‖²₂                          (Eq. (5))

What each combination computes (``target`` is the full-precision GradPC target ŵ; the network is always in
evaluation mode; the gradient is with respect to the weights the network computes with, or their latent
copies where B applies):

| ``paq`` | ``quantized_grad`` | forward weights | backward | activations |
|---|---|---|---|---|
| False | False | ŵ | plain ∇ | full precision | (= GC, Eq. (4))
| True  | False | ŵ* = F(ŵ) (PAQ) | plain ∇ at ŵ* | full precision |
| False | True  | ŵ | B(ŵ) ⊙ ∇ (weights), activations through F and B | quantized as the task says |
| True  | True  | ŵ* = F(ŵ) | B(ŵ) ⊙ ∇ at ŵ*, activations through F and B | quantized as the task says | (Eq. (5))

The weights' scale s is a constant in every row: the int method's max-abs scale, or for LSQ the step PTQ sets
on ŵ by the MSE rule (``quantizers.mse_step``, also PAQ's step), frozen, so that s is not among the parameters
whose gradient GC-Q cancels.

Note: with the int method's max-abs scale, B = 1_[−2^(b−1), 2^(b−1)−1](w/s) is 1 for every weight, so for
weight-only int schemes the ``quantized_grad`` switch changes nothing. Under LSQ's step the MSE rule clips the
largest weights, where B = 0, so for weight-only lsq schemes ĝ ≠ ∇ (Table 4's lsq rows test the switch at 4 and 8
bits). It matters for BNN too, whose F = α·sign(w) passes α·1_[−1,1](w) ⊙ ∇ back (α = mean|w|, a constant): ĝ
rescales each layer's gradient by α; and through activation quantization (WA tasks) and BNN++'s B = SS_β'.
"""

import copy

from torch import nn

from ..artifacts import tensor_digest
from ..counters import UNITS
from ..data import Dataset
from ..poison import PoisonSet
from ..quant import QuantScheme, Twin, ptq, quantized_state
from .base import ATTACKS, Needs
from .gc import cancel_units, gradient_cancel


class BackwardOnly(nn.Module):
    """Forward the identity, backward through ``quantizer``'s B: the STE identity w + (q(w) − q(w))ᵀ."""

    def __init__(self, quantizer: nn.Module):
        super().__init__()
        self.quantizer = quantizer

    def forward(self, w):
        q = self.quantizer(w)
        return w.detach() + (q - q.detach())


def network(target: nn.Module, scheme: QuantScheme, paq: bool, quantized_grad: bool, clean: Dataset) -> nn.Module:
    """The network whose gradient GC-Q cancels, for one combination of the two switches (see the table above).

    The quantized network is ŵ's PTQ: LSQ's step set by the MSE rule on ŵ, activation scales (WA tasks)
    calibrated on μ. Weight quantizers are frozen: LSQ's step is a constant, not a parameter GC-Q cancels.
    """
    if scheme.is_fp:
        raise ValueError("GC-Q needs a quantization scheme; for full precision use GC")
    qat = ptq(target, scheme, calib=clean)
    for m in qat.modules():
        if isinstance(m, Twin):
            m.weight_quantizer.requires_grad_(False)
    if quantized_grad:
        if not paq:
            for m in qat.modules():
                if isinstance(m, Twin):
                    m.weight_quantizer = BackwardOnly(m.weight_quantizer)
        return qat
    if not paq:
        return target
    fp = copy.deepcopy(target)
    fp.load_state_dict({k: v for k, v in quantized_state(qat).items() if k in fp.state_dict()})
    return fp


@ATTACKS.register("gc_q", Needs(model="gradpc", scheme="attacked", settings="gc"))
def gc_q(
    clean: Dataset,
    eps_d: float,
    seed: int,
    *,
    target: nn.Module,
    scheme: QuantScheme,
    paq: bool = True,
    quantized_grad: bool = True,
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
    """GC-Q, Eq. (5): GC against the quantized network of ``scheme`` at the PAQ target (both switches on)."""
    net = network(target, scheme, paq, quantized_grad, clean)
    extra = {
        "scheme": scheme.name,
        "paq": paq,
        "quantized_grad": quantized_grad,
        "target": tensor_digest(target.state_dict().values()),
    }
    return gradient_cancel(
        net,
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
        attack="gc_q",
        extra=extra,
    )


UNITS.register("gc_q")(cancel_units(gc_q))
