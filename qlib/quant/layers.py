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
from . import methods
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
    method = methods.method(scheme.method)
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
        acts = method.activation(scheme, layer) if hidden else None
        _set(q, name, TWINS[type(layer)].from_float(layer, method.weight(scheme, layer), acts))
    if scheme.a_bits == 1:
        channels = relu_channels(q) if method.relu_channels else {}
        for name in [n for n, m in q.named_modules() if isinstance(m, nn.ReLU)]:
            _set(q, name, method.relu(scheme, channels.get(name)))
    return q


def ptq(model: nn.Module, scheme: QuantScheme, calib=None, batches: int = 4) -> nn.Module:
    """Post-training quantization, Eq. (8): a quantized copy of a trained ``model``, in eval mode.

    Weights are used as w* = F(w) (sign for the 1-bit methods), then the method's calibration rule runs
    (``methods.Method.calibrate``): under LSQ each layer's step is set by the MSE rule ``quantizers.mse_step`` on its
    weights; when the scheme quantizes activations with data-set scales, they are calibrated on ``batches`` batches
    of ``calib``; dynamic formats (torchao's) have nothing to set. BatchNorm statistics are left as trained.
    AdaBin 1W1A needs no calibration: at their initial values Maxout (γ⁺, γ⁻ > 0 keep the sign) followed by
    the AdaBin binarizer (α_a = 1, β_a = 0) is exactly sign, so PTQ activations are the BNN ones.
    """
    q = quantize_modules(model, scheme).eval()
    if not scheme.is_fp:
        try:
            methods.method(scheme.method).calibrate(q, calib, batches)
        except ValueError as e:
            raise ValueError(f"scheme {scheme.name}: {e}") from None
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
