"""The numeric policy: which precision each kind of work runs in, and whether algorithms are deterministic.

- Training (``train.fit``) runs under bf16 autocast on CUDA, in channels_last, as before. Activation quantizers
  compute their grid in float32 whatever the input's dtype, so a scale is never rounded to bf16.
- Everything else (attacks, GradPC, PTQ calibration, evaluation) runs in float32 with TF32 off, for convolutions
  and matrix products alike: the attacks' objectives are cancellations (GC drives ‖∇ℓ(μ) + ∇ℓ(ν)‖ toward 0), and
  TF32's 10-bit mantissa puts a floor under them near 1e-3 of the clean gradient's norm. TF32 does not touch bf16
  autocast, so training is unaffected. ``bench/gpu_check.py`` measures the GC objective both ways.
- ``deterministic`` (a preset field): ``torch.use_deterministic_algorithms(True)`` and deterministic cuDNN, with
  the cuBLAS workspace that it needs; a non-deterministic kernel is then an error instead of noise. The models
  average-pool with ``x.mean((2, 3))``, whose CUDA backward is deterministic (``AdaptiveAvgPool2d``'s is not).

``configure`` sets this process-wide; every cell calls it through ``qlib.cells.load_data``. Cache manifests record
``policy()`` beside the machine (``qlib.machine``).
"""

import os

import torch
import torch.nn.functional as nnf
from torch import nn


def configure(deterministic: bool = False) -> None:
    """Set the policy for this process: TF32 off; deterministic algorithms on or off."""
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if torch.are_deterministic_algorithms_enabled() != deterministic:  # the call imports torch._inductor: ~3 s
        torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False


def policy(device: torch.device) -> str:
    """The policy in force on ``device``, in one line for a manifest or a report footer (``ieee``: no TF32)."""
    train = "bf16 autocast" if device.type == "cuda" else "float32"
    return (
        f"training {train} channels_last; float32 convolutions {torch.backends.cudnn.conv.fp32_precision}, "
        f"matmul {torch.backends.cuda.matmul.fp32_precision}; deterministic "
        f"{torch.are_deterministic_algorithms_enabled()}"
    )


def conv2d(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv``'s convolution of ``x`` with ``weight`` and ``bias`` (``conv._conv_forward``), with a route-around: on
    the CPU, a 1×1 convolution at a stride s > 1 without padding, on a channels_last batch, runs at stride 1 on every
    s-th pixel of ``x`` (taken by a 1×1 average pool, which keeps channels_last in the forward and the backward pass,
    where a slice would hand back NCHW gradients and change the rounding downstream). Same values: it is the same
    oneDNN kernel on the same pixels (bit for bit, forward and both gradients, and the weights after training, measured
    with oneDNN 3.12 at AVX-512, AVX2 and SSE4.1, 1 and 2 threads).

    Why: oneDNN's 1×1 backward-weights kernel (``jit_1x1``, AVX-512 and AVX2) first copies a strided input to unit
    stride ("rtus"), and in nhwc with fewer input channels than its block (16 on AVX-512, 8 on AVX2) it writes past
    that workspace: heap corruption, a SIGSEGV or "double free or corruption" in ``loss.backward()`` (torch 2.14.1,
    2 threads, odd batches; ResNet-18's first projection shortcut at width 1/8 has 8 channels; uxlfoundation/oneDNN
    #6035). At stride 1 no copy is made. With one thread and fewer than 16 images torch would send a 1×1 stride-1
    convolution to its own kernel instead of oneDNN (other rounding), so that case is left as it was."""
    sh, sw = conv.stride
    if (
        (sh, sw) != (1, 1)
        and conv.kernel_size == (1, 1)
        and conv.padding in ((0, 0), "valid")
        and conv.dilation == (1, 1)
        and x.ndim == 4
        and x.device.type == "cpu"
        and x.is_contiguous(memory_format=torch.channels_last)
        and (len(x) >= 16 or torch.get_num_threads() > 1)
    ):
        return nnf.conv2d(nnf.avg_pool2d(x, 1, (sh, sw)), weight, bias, 1, 0, 1, conv.groups)
    return conv._conv_forward(x, weight, bias)
