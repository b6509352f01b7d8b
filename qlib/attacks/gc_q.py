"""GC-Q, Gradient Canceling with Quantization (Section 3, eq. 5), with the two switches of Table 4's ablation.

    argmin_ν ½‖B∇_w ℓ(μ; ŵ*) + B∇_w ℓ(ν; ŵ*)‖²₂                          (eq. 5)

What each combination computes (``target`` is the full-precision GradPC target ŵ; the network is always in
evaluation mode; the gradient is with respect to the weights the network computes with, or their latent
copies where B applies):

| ``paq`` | ``quantized_grad`` | forward weights | backward | activations |
|---|---|---|---|---|
| False | False | ŵ | plain ∇ | full precision | (= GC, eq. 4)
| True  | False | ŵ* = P_Q(ŵ) (PAQ) | plain ∇ at ŵ* | full precision |
| False | True  | ŵ | B(ŵ) ⊙ ∇ (weights), activations through F and B | quantized as the task says |
| True  | True  | ŵ* = F(ŵ) | B(ŵ) ⊙ ∇ at ŵ*, activations through F and B | quantized as the task says | (eq. 5)

Note: with the int method's max-abs scale, B = 1_[−2^(b−1), 2^(b−1)−1](w/s) is 1 for every weight and s is a
constant, so for weight-only int schemes the ``quantized_grad`` switch changes nothing. It does matter for BNN,
whose F = α·sign(w) passes α·1_[−1,1](w) ⊙ ∇ back (α = mean|w|, a constant): ĝ rescales each layer's gradient by
α. It also matters through activation quantization (WA tasks) and BNN++'s B = SS_β'.
"""

import copy

from torch import nn

from ..artifacts import tensor_digest
from ..counters import UNITS
from ..data import Dataset
from ..poison import PoisonSet
from ..quant import QuantScheme, Twin, calibrate, quantize_modules, quantized_state
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

    Activation scales (WA tasks) are calibrated on μ, as PTQ does.
    """
    if scheme.is_fp:
        raise ValueError("GC-Q needs a quantization scheme; for full precision use GC")
    qat = quantize_modules(target, scheme).eval()
    calibrate(qat, clean)
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
def gc_q(clean: Dataset, eps_d: float, seed: int, *, target: nn.Module, scheme: QuantScheme, paq: bool = True,
         quantized_grad: bool = True, epochs: int = 2000, lr: float = 0.01, optimizer: str = "adam",
         threshold: float = 1.0, chunk: int = 512, layers: str = "all", device: str = "auto",
         progress: bool = False) -> PoisonSet:
    """GC-Q, eq. (5): GC against the quantized network of ``scheme`` at the PAQ target (both switches on)."""
    net = network(target, scheme, paq, quantized_grad, clean)
    extra = {"scheme": scheme.name, "paq": paq, "quantized_grad": quantized_grad,
             "target": tensor_digest(target.state_dict().values())}
    return gradient_cancel(net, clean, eps_d, seed, epochs=epochs, lr=lr, optimizer=optimizer, threshold=threshold,
                           chunk=chunk, layers=layers, device=device, progress=progress, attack="gc_q", extra=extra)


UNITS.register("gc_q")(cancel_units(gc_q))
