"""Today's formats, as torchao defines them (optional: ``pip install -e '.[quant]'``; imported only when used).

Two registered methods (``methods.Method``):

- ``torchao``: b-bit integer weights (2 ≤ b ≤ 8), symmetric, one scale per output channel or, with ``group_size``
  g, per group of g consecutive weights (``4W:torchao-g32``); with ``8A`` (``4W8A:torchao-g32``) also int8 dynamic
  per-token asymmetric activations. torchao's PTQ configs ``IntxWeightOnlyConfig`` and
  ``Int8DynamicActivationIntxWeightConfig``.
- ``fp8``: float8 E4M3 weights, one scale per output channel (``8W:fp8``), and with ``8A`` float8 E4M3 dynamic
  per-token activations (``8W8A:fp8``): ``Float8WeightOnlyConfig`` and ``Float8DynamicActivationFloat8WeightConfig``
  with ``PerRow`` granularity.

F and B (Eq. (10)) are torchao's own QAT fake quantizers for that PTQ config, the ones ``QATConfig(config,
step="prepare")`` puts on a linear layer (``fake_quantizers``); PTQ (Eq. (8)) uses the same F in evaluation, and
``qlib.quant`` needs no calibration for them (every scale is computed from the tensor at hand). torchao quantizes
linear layers only; qlib applies the same quantizers to conv layers too, to the (out, in·kh·kw) matrix of the
conv's matmul, and quantizes a conv's input per pixel (its tokens, channels last). Where g does not divide a row
the row's last group is shorter (zero padding, which a symmetric scale ignores). ``torchao_model`` quantizes a
model with torchao's own API, the reference the tests compare with.
"""

import copy
import logging

import torch
import torch.nn.functional as nnf
from torch import nn

from .methods import Method, register

INSTALL = "pip install -e '.[quant]'"
GROUP_SIZES = (16, 32, 64, 128, 256)


def _torch_enum_notice(record: logging.LogRecord) -> bool:
    """False for torch's notice that an enum torchao registers with pytree needs no registration (logged once per
    enum, at import or at first use): a deprecation in torchao's code, not something a qlib user can act on."""
    return "is an Enum subclass and is now natively supported" not in record.getMessage()


logging.getLogger("torch.utils._pytree").addFilter(_torch_enum_notice)


def base_config(scheme):
    """torchao's PTQ config for ``scheme`` (a ``torchao`` or ``fp8`` scheme)."""
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Float8WeightOnlyConfig,
        Int8DynamicActivationIntxWeightConfig,
        IntxWeightOnlyConfig,
    )
    from torchao.quantization.granularity import PerAxis, PerGroup, PerRow

    if scheme.method == "fp8":
        dynamic = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
        return dynamic if scheme.a_bits else Float8WeightOnlyConfig()
    dtype = getattr(torch, f"int{scheme.w_bits}")
    granularity = PerGroup(scheme.group_size) if scheme.group_size else PerAxis(0)
    if scheme.a_bits:
        return Int8DynamicActivationIntxWeightConfig(weight_dtype=dtype, weight_granularity=granularity)
    return IntxWeightOnlyConfig(weight_dtype=dtype, granularity=granularity)


def fake_quantizers(scheme) -> tuple[nn.Module | None, nn.Module]:
    """(activation, weight) fake quantizers that torchao's QAT puts on a linear layer for ``base_config(scheme)``.

    torchao's QAT has no mapping for weight-only float8; its float8 weight quantizer is the one of the dynamic
    float8 config, whose activation quantizer is then left out."""
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, quantize_
    from torchao.quantization.granularity import PerRow
    from torchao.quantization.qat import QATConfig

    config = base_config(scheme)
    if scheme.method == "fp8" and not scheme.a_bits:
        config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    probe = nn.Sequential(nn.Linear(scheme.group_size or 16, 1))
    quantize_(probe, QATConfig(config, step="prepare"))
    layer = probe[0]
    activation = layer.activation_fake_quantizer if scheme.a_bits else None
    weight = layer.weight_fake_quantizer
    if scheme.method == "fp8":
        activation, weight = (StraightThrough(q) if q is not None else None for q in (activation, weight))
    return activation, weight


class StraightThrough(nn.Module):
    """F of ``quantizer`` forward, B = 1 backward: F(x) exactly (F(x) + (x − x) adds an exact 0), gradient 1.

    torchao's float8 fake quantizer has no straight-through estimator (its int ones have one): autograd
    differentiates its dynamic scale, max|x|/448 per row, so each row's largest element receives the sum of the row's
    rounding residuals times the upstream gradient (ratios of −0.4 to 6.4 to the upstream gradient, measured on
    random rows). QAT through that trained to 57.9% where int 8W reached 74.3% (the ``cpu`` CNN, 2,000 images, 2
    epochs); with B = 1, as for torchao's int formats, it trains normally (docs/guide/quantizers.md)."""

    def __init__(self, quantizer: nn.Module):
        super().__init__()
        self.quantizer = quantizer

    def forward(self, x):
        return self.quantizer(x).detach() + (x - x.detach())


class FakeQuantWeight(nn.Module):
    """w* = F(w) by torchao's weight fake quantizer, applied to the (out, in·kh·kw) matrix of w; B is torchao's (for
    float8, 1: :class:`StraightThrough`)."""

    def __init__(self, quantizer: nn.Module, group_size: int | None):
        super().__init__()
        self.quantizer, self.group_size = quantizer, group_size

    def forward(self, w):
        rows = w.reshape(w.shape[0], -1)
        width = rows.shape[1]
        pad = -width % self.group_size if self.group_size else 0
        return self.quantizer(nnf.pad(rows, (0, pad)))[:, :width].reshape(w.shape)


class FakeQuantActivation(nn.Module):
    """A layer's input through torchao's dynamic per-token fake quantizer; a conv input's tokens are its pixels."""

    def __init__(self, quantizer: nn.Module):
        super().__init__()
        self.quantizer = quantizer

    def forward(self, x):
        return self.quantizer(x.movedim(1, -1)).movedim(-1, 1) if x.ndim == 4 else self.quantizer(x)


def _weight(scheme, layer):
    return FakeQuantWeight(fake_quantizers(scheme)[1], scheme.group_size)


def _activation(scheme, layer):
    return FakeQuantActivation(fake_quantizers(scheme)[0])


def torchao_model(model: nn.Module, scheme, layers: list[str]) -> nn.Module:
    """A copy of ``model`` whose linear ``layers`` are quantized by torchao's own PTQ API (``quantize_``) with
    ``base_config(scheme)``: the reference for qlib's PTQ of that scheme."""
    from torchao.quantization import quantize_

    q = copy.deepcopy(model).eval()
    quantize_(q, base_config(scheme), filter_fn=lambda m, name: isinstance(m, nn.Linear) and name in layers)
    return q


register(
    "torchao",
    Method(
        _weight,
        activation=_activation,
        w_bits=tuple(range(2, 9)),
        a_bits=(None, 8),
        granularities=("channel", "group"),
        group_sizes=GROUP_SIZES,
        requires="torchao",
        install=INSTALL,
        summary="torchao's int weights per channel or group, with 8A int8 dynamic per-token activations",
    ),
)
register(
    "fp8",
    Method(
        _weight,
        activation=_activation,
        w_bits=(8,),
        a_bits=(None, 8),
        granularities=("channel",),
        requires="torchao",
        install=INSTALL,
        summary="torchao's float8 E4M3 weights per channel, with 8A float8 dynamic per-token activations",
    ),
)
