"""Quantization (Appendix A.2): forward/backward quantizers F and B, schemes, PTQ (Eq. (8)) and QAT (Eqs. (9)-(10))."""

from .functions import P_Q, int_range, lsq, sign, sign_ede, sign_swish, signswish, signswish_grad
from .layers import (
    QConv2d,
    QLinear,
    Twin,
    approximate_gradient,
    calibrate,
    eligible_layers,
    prepare_qat,
    ptq,
    quantize_modules,
    quantized_state,
)
from .scheme import KEEP_FP, METHODS, REGIMES, TASKS, QuantScheme, parse_scheme, scheme_named

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
    "REGIMES",
    "TASKS",
    "QuantScheme",
    "parse_scheme",
    "scheme_named",
]
