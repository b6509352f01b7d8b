"""Quantization (Appendix A.2): forward/backward quantizers F and B, schemes, PTQ (Eq. (8)) and QAT (Eqs. (9)-(10))."""

from . import formats  # registers torchao's formats (torchao itself is imported only when a scheme uses them)
from .functions import P_Q, int_range, lsq, sign, sign_ede, sign_swish, signswish, signswish_grad
from .layers import (
    QConv2d,
    QLinear,
    Twin,
    approximate_gradient,
    eligible_layers,
    prepare_qat,
    ptq,
    quantize_modules,
    quantized_state,
)
from .methods import METHODS, Method, calibrate, register
from .scheme import KEEP_FP, REGIMES, TASKS, QuantScheme, parse_scheme, scheme_named

__all__ = [
    "P_Q",
    "int_range",
    "lsq",
    "sign",
    "sign_ede",
    "sign_swish",
    "signswish",
    "signswish_grad",
    "QConv2d",
    "QLinear",
    "Twin",
    "approximate_gradient",
    "calibrate",
    "eligible_layers",
    "prepare_qat",
    "ptq",
    "quantize_modules",
    "quantized_state",
    "KEEP_FP",
    "METHODS",
    "Method",
    "register",
    "formats",
    "REGIMES",
    "TASKS",
    "QuantScheme",
    "parse_scheme",
    "scheme_named",
]
