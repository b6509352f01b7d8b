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
``policy()`` beside the machine (``provenance.machine``).
"""

import os

import torch

TRAIN_DTYPE = torch.bfloat16  # autocast dtype of training on CUDA


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
    return (f"training {train} channels_last; float32 convolutions {torch.backends.cudnn.conv.fp32_precision}, "
            f"matmul {torch.backends.cuda.matmul.fp32_precision}; deterministic "
            f"{torch.are_deterministic_algorithms_enabled()}")
