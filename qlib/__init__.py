"""qlib: data-poisoning attacks against quantized neural networks (Lu, Wang, Zhang, Yu, 2024)."""

__version__ = "0.1.0"
