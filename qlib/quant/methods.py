"""Quantization methods by name: what each declares, and the built-ins (int, lsq, bnn, bnn++, adabin).

A method is a :class:`Method`: its forward/backward quantizers F and B (Eq. (10)) for a layer's weights and for a
hidden layer's input, what takes the place of a ReLU when activations have 1 bit, the bit-widths and granularities it
supports, whether it has learned parameters, and its PTQ calibration rule (Eq. (8)). ``register(name, method)``
adds one; so does an installed package, through the entry-point group ``qlib.quantizers`` (each entry point names a
``Method``; its name is the method's). ``parse_scheme`` checks a scheme against what its method declared, before
anything is computed.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..registry import Registry
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

GRANULARITIES = ("tensor", "channel", "group")
ANY_BITS = tuple(range(1, 33))


@torch.no_grad()
def calibrate(model: nn.Module, data, batches: int = 4, batch_size: int = 256) -> None:
    """Set activation scales from the running max over the first ``batches`` batches of ``data`` (eval mode)."""
    quantizers = [m for m in model.modules() if isinstance(m, IntActivation)]
    if not quantizers:
        return
    if data is None:
        raise ValueError("this scheme quantizes activations: ptq needs calib data to set their scales")
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


def int_activation(scheme, layer: nn.Module) -> nn.Module:
    """b-bit activations with a data-calibrated max-abs scale (``quantizers.IntActivation``)."""
    return IntActivation(scheme.a_bits, scheme.act_momentum)


@dataclass(frozen=True)
class Method:
    """What a quantization method declares when it is registered.

    - ``weight(scheme, layer)``: the module computing w* = F(w) of ``layer``'s latent weights, with B as its backward
      (Eq. (10)); it is built once per quantized layer.
    - ``activation(scheme, layer)``: the quantizer of ``layer``'s input when activations have ≥ 2 bits (the image,
      the first layer's input, is never quantized).
    - ``relu(scheme, channels)``: what replaces each ReLU when activations have 1 bit; ``channels`` is the channel
      count there when ``relu_channels`` is set (AdaBin's per-channel Maxout), else None.
    - ``calibrate(model, data, batches)``: PTQ's rule, run on the quantized copy of a trained model (Eq. (8)).
    - ``w_bits``, ``a_bits``: the bit-widths it supports (``a_bits`` includes None, weight-only, where it may).
    - ``one_bit``: a method for tasks with a 1-bit part (bnn and kin) rather than for multi-bit ones.
    - ``granularities``: "tensor" (one scale per tensor), "channel" (per output channel) and/or "group" (per group
      of ``group_sizes`` consecutive weights of an output channel); the first is what a scheme gets when it asks for
      none (``per_channel`` asks for "channel", ``group_size`` for "group").
    - ``learned``: it has parameters that QAT trains (LSQ's step, AdaBin's sets).
    - ``requires``: the optional package it imports, checked when a scheme names it; ``install``: how to get it.
    """

    weight: Callable
    calibrate: Callable = calibrate
    activation: Callable = int_activation
    relu: Callable | None = None
    relu_channels: bool = False
    w_bits: tuple[int, ...] = tuple(range(2, 33))
    a_bits: tuple[int | None, ...] = (None, *range(2, 33))
    one_bit: bool = False
    granularities: tuple[str, ...] = ("tensor", "channel")
    group_sizes: tuple[int, ...] = ()
    learned: bool = False
    requires: str | None = None
    install: str = ""
    summary: str = ""


METHODS = Registry("quantization method")
_loaded = False


def register(name: str, method: Method) -> Method:
    """Register ``method`` under ``name`` (a scheme then names it as ``TASK:name``)."""
    if not isinstance(method, Method):
        raise TypeError(f"quantization method {name!r} must be a qlib.quant.Method, got {type(method).__name__}")
    return METHODS.register(name)(method)


def _load_entry_points() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in importlib.metadata.entry_points(group="qlib.quantizers"):
        if ep.name not in METHODS.names():
            register(ep.name, ep.load())


def method(name: str) -> Method:
    """The method registered as ``name`` (installed packages' entry points included)."""
    _load_entry_points()
    return METHODS.get(name)


def names() -> list[str]:
    """Every registered method, built-ins first in the order the paper uses them."""
    _load_entry_points()
    return sorted(METHODS.names(), key=lambda n: (BUILT_INS.index(n) if n in BUILT_INS else len(BUILT_INS), n))


# -- the built-ins ---------------------------------------------------------------------------------------------


def _int_weight(scheme, layer):
    return IntWeight(scheme.w_bits, scheme.per_channel)


def _lsq_weight(scheme, layer):
    return LSQWeight(scheme.w_bits, layer.weight, scheme.per_channel)


@torch.no_grad()
def _lsq_calibrate(model, data, batches=4):
    """LSQ's PTQ: each layer's step by the MSE rule on its weights (``quantizers.mse_step``), then activations."""
    for m in model.modules():
        if isinstance(getattr(m, "weight_quantizer", None), LSQWeight):
            m.weight_quantizer.calibrate(m.weight)
    calibrate(model, data, batches)


def _one_bit_weight(one_bit: Callable):
    """A 1-bit method's weights; a part with ≥ 2 bits in its task (e.g. 4W1A) is "int"."""
    return lambda scheme, layer: _int_weight(scheme, layer) if scheme.w_bits >= 2 else one_bit(scheme)


def _adabin_relu(scheme, channels):
    return nn.Sequential(Maxout(channels), AdaBinActivation())


ONE_BIT = dict(w_bits=ANY_BITS, a_bits=(None, *ANY_BITS), one_bit=True)
BUILT_INS = ("int", "lsq", "bnn", "bnn++", "adabin")

register(
    "int",
    Method(_int_weight, summary="F = P_Q with the max-abs scale, B = the clipped indicator (Eq. (8))"),
)
register(
    "lsq",
    Method(
        _lsq_weight, _lsq_calibrate, learned=True, summary="P_Q with a learned step (LSQ); PTQ sets it by the MSE rule"
    ),
)
register(
    "bnn",
    Method(
        _one_bit_weight(lambda s: SignWeight(s.scale_1bit, s.per_channel)),
        relu=lambda s, channels: SignActivation(),
        summary="F = sign, B = 1_[−1,1]",
        **ONE_BIT,
    ),
)
register(
    "bnn++",
    Method(
        _one_bit_weight(lambda s: SignSwishWeight(s.scale_1bit, s.per_channel, s.beta)),
        relu=lambda s, channels: SignSwishActivation(s.beta),
        summary="F = SignSwish SS_β, B = SS_β'",
        **ONE_BIT,
    ),
)
register(
    "adabin",
    Method(
        _one_bit_weight(lambda s: AdaBinWeight()),
        relu=_adabin_relu,
        relu_channels=True,
        granularities=("channel",),
        learned=True,
        summary="adaptive binary sets {β − α, β + α} and Maxout (AdaBin)",
        **ONE_BIT,
    ),
)
