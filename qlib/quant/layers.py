"""Quantized twins of ``nn.Conv2d``/``nn.Linear`` and the two ways to use them: PTQ and QAT.

A twin keeps the full-precision latent weights w as its ``weight`` parameter (same name and shape as the
original, so state dicts carry over; LSQ adds its step s) and computes with w* = F(w); gradients reach w through
B (Eqs. (9)-(10)).
With b-bit activations (b ≥ 2) a twin first quantizes its input. With 1-bit activations every ReLU of the
network is replaced by the binary activation, the BNN design, so binary layers see ±1 inputs; for AdaBin each
ReLU becomes a Maxout followed by the AdaBin binarizer, so binary layers see two learned values.
"""

import copy

import torch
import torch.nn.functional as nnf
from torch import nn

from .. import numerics
from .quantizers import (
    AdaBinActivation,
    AdaBinWeight,
    IntActivation,
    IntWeight,
    LSQWeight,
    Maxout,
    SignActivation,
    SignSwishActivation,
    SignSwishWeight,
    SignWeight,
)
from .scheme import QuantScheme


class Twin:
    """Mixin of the quantized layers: ``weight_quantizer`` gives w* = F(w); ``input_quantizer`` (or None) quantizes the
    input."""

    @classmethod
    def from_float(cls, layer, weight_quantizer, input_quantizer):
        """Turn ``layer`` (already a copy) into its twin in place, keeping its parameters."""
        layer.__class__ = cls
        layer.weight_quantizer = weight_quantizer
        layer.input_quantizer = input_quantizer
        return layer

    def quantized_weight(self) -> torch.Tensor:
        return self.weight_quantizer(self.weight)

    def _input(self, x):
        return x if self.input_quantizer is None else self.input_quantizer(x)


class QConv2d(Twin, nn.Conv2d):
    def forward(self, x):
        return numerics.conv2d(
            self, self._input(x), self.quantized_weight(), self.bias
        )  # a CPU route-around, same values


class QLinear(Twin, nn.Linear):
    def forward(self, x):
        return nnf.linear(self._input(x), self.quantized_weight(), self.bias)


TWINS = {nn.Conv2d: QConv2d, nn.Linear: QLinear}


def eligible_layers(model: nn.Module, keep_fp) -> list[str]:
    """Names of the conv/linear layers to quantize: all, less the first and/or last as ``keep_fp`` says."""
    names = [n for n, m in model.named_modules() if type(m) in TWINS]
    if "first" in keep_fp:
        names = names[1:]
    if "last" in keep_fp:
        names = names[:-1]
    return names


def _weight_quantizer(scheme: QuantScheme, weight: torch.Tensor) -> nn.Module:
    """The weight quantizer of one layer; LSQ's step starts from the layer's ``weight``."""
    if scheme.w_bits is None:
        return nn.Identity()
    if scheme.method == "lsq":
        return LSQWeight(scheme.w_bits, weight, scheme.per_channel)
    if scheme.w_bits >= 2:
        return IntWeight(scheme.w_bits, scheme.per_channel)
    if scheme.method == "bnn":
        return SignWeight(scheme.scale_1bit, scheme.per_channel)
    if scheme.method == "adabin":
        return AdaBinWeight()
    return SignSwishWeight(scheme.scale_1bit, scheme.per_channel, scheme.beta)


def _binary_activation(scheme: QuantScheme, channels: int | None) -> nn.Module:
    if scheme.method == "adabin":
        return nn.Sequential(Maxout(channels), AdaBinActivation())
    return SignActivation() if scheme.method == "bnn" else SignSwishActivation(scheme.beta)


_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def relu_channels(model: nn.Module) -> dict[str, int]:
    """The channel count at each ReLU, by name: that of the latest BatchNorm, conv or linear layer registered
    before it (module registration order, which follows the forward order in ``qlib.models``)."""
    channels, last = {}, None
    for name, m in model.named_modules():
        if isinstance(m, _BATCHNORMS):
            last = m.num_features
        elif isinstance(m, nn.Conv2d):
            last = m.out_channels
        elif isinstance(m, nn.Linear):
            last = m.out_features
        elif isinstance(m, nn.ReLU):
            if last is None:
                raise ValueError(
                    f"cannot infer the channels of ReLU {name!r}: no BatchNorm, conv or linear layer is "
                    "registered before it (AdaBin's per-channel Maxout needs them)"
                )
            channels[name] = last
    return channels


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def quantize_modules(model: nn.Module, scheme: QuantScheme) -> nn.Module:
    """A copy of ``model`` with every eligible layer replaced by its quantized twin under ``scheme``. A WA scheme
    quantizes each quantized layer's input except the first layer's, which is the image, not a hidden activation."""
    q = copy.deepcopy(model)
    if scheme.is_fp:
        return q
    first = next(n for n, m in q.named_modules() if type(m) in TWINS)
    eligible = eligible_layers(q, scheme.keep_fp)
    if scheme.a_bits and scheme.a_bits >= 2 and not set(eligible) - {first}:
        raise ValueError(
            f"scheme {scheme.name} quantizes activations, but with keep_fp={list(scheme.keep_fp)} no quantized "
            "layer has a hidden activation as input (the image is not an activation): use a weight-only scheme"
        )
    for name in eligible:
        layer = q.get_submodule(name)
        hidden = (
            scheme.a_bits and scheme.a_bits >= 2 and name != first
        )  # the network's input, the image, stays as it is
        acts = IntActivation(scheme.a_bits, scheme.act_momentum) if hidden else None
        _set(q, name, TWINS[type(layer)].from_float(layer, _weight_quantizer(scheme, layer.weight), acts))
    if scheme.a_bits == 1:
        channels = relu_channels(q) if scheme.method == "adabin" else {}
        for name in [n for n, m in q.named_modules() if isinstance(m, nn.ReLU)]:
            _set(q, name, _binary_activation(scheme, channels.get(name)))
    return q


def activation_quantizers(model: nn.Module) -> list[IntActivation]:
    return [m for m in model.modules() if isinstance(m, IntActivation)]


@torch.no_grad()
def calibrate(model: nn.Module, data, batches: int = 4, batch_size: int = 256) -> None:
    """Set activation scales from the running max over the first ``batches`` batches of ``data`` (eval mode)."""
    quantizers = activation_quantizers(model)
    if not quantizers:
        return
    device = next(model.parameters()).device
    model.eval()
    for q in quantizers:
        q.calibrating = True
        q.seen.fill_(False)
    try:
        for i in range(min(batches, -(-len(data) // batch_size))):
            model(data.x[i * batch_size : (i + 1) * batch_size].to(device))
    finally:
        for q in quantizers:
            q.calibrating = False


def ptq(model: nn.Module, scheme: QuantScheme, calib=None, batches: int = 4) -> nn.Module:
    """Post-training quantization, Eq. (8): a quantized copy of a trained ``model``, in eval mode.

    Weights are used as w* = F(w) (sign for the 1-bit methods); under LSQ each layer's step is set by the MSE rule
    ``quantizers.mse_step`` on its weights. When the scheme quantizes activations, their scales are calibrated on
    ``batches`` batches of ``calib``. BatchNorm statistics are left as trained.
    AdaBin 1W1A needs no calibration: at their initial values Maxout (γ⁺, γ⁻ > 0 keep the sign) followed by
    the AdaBin binarizer (α_a = 1, β_a = 0) is exactly sign, so PTQ activations are the BNN ones.
    """
    q = quantize_modules(model, scheme).eval()
    for m in q.modules():
        if isinstance(m, Twin) and isinstance(m.weight_quantizer, LSQWeight):
            m.weight_quantizer.calibrate(m.weight)
    if activation_quantizers(q):
        if calib is None:
            raise ValueError(f"scheme {scheme.name} quantizes activations: ptq needs calib data to set their scales")
        calibrate(q, calib, batches)
    return q


def prepare_qat(model: nn.Module, scheme: QuantScheme) -> nn.Module:
    """Quantization-aware training, Eqs. (9)-(10): a copy whose forward uses w* = F(w) and whose gradients
    reach the latent full-precision w through B. Train it with ``qlib.train.fit`` like any model (which trains
    LSQ's steps too, from LSQ's initialisation on the model's weights)."""
    return quantize_modules(model, scheme).train()


def quantized_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with each quantized layer's weight replaced by its discrete w* (evaluation F).

    The weight quantizers' own state (LSQ's step s) is folded into w* and left out, so a weight-only scheme's
    state has the float model's keys."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for name, m in model.named_modules():
        if isinstance(m, Twin):
            prefix = f"{name}." if name else ""
            for k in m.weight_quantizer.state_dict():
                del state[f"{prefix}weight_quantizer.{k}"]
            was_training = m.weight_quantizer.training
            m.weight_quantizer.eval()
            with torch.no_grad():
                state[f"{prefix}weight"] = m.quantized_weight().clone()
            m.weight_quantizer.train(was_training)
    return state


def approximate_gradient(model: nn.Module, x, y, create_graph: bool = False) -> list[torch.Tensor]:
    """∇_w ℓ of the sum-reduced cross-entropy on (x, y), for every parameter of ``model``.

    On a QAT model the forward pass uses w* = F(w) and the backward passes through B, so this is the
    approximate gradient B∇ℓ(w*) of Eq. (10) (what GC-Q cancels, Eq. (5)); on a float model it is ∇ℓ(w).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    loss = nnf.cross_entropy(model(x), y, reduction="sum")
    return list(torch.autograd.grad(loss, params, create_graph=create_graph))
