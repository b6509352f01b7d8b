"""The constraint modes of the attacks that move pixels freely (GC, GC-Q, TGDA, TGDA-Q): where a poison may lie.

- ``bounds``: ``"image"`` (the default) projects every poison onto the pixel range [0, 1], so poisons are images;
  ``"none"`` leaves pixels unbounded, as the official GC and TGDA code does. A ``"none"`` poison is not an image
  (measured on Fashion-MNIST: pixels up to ±18), and every table labels it so.
- ``norm`` and ``eps``: an optional budget around each poison's source image, ‖x − x_source‖ ≤ eps in ``"linf"``
  or ``"l2"`` (per image, all channels). The budget is applied first, then the bounds; clipping to [0, 1] only
  shrinks each pixel's change (the source lies in [0, 1]), so the result keeps both.

A poison records its mode in its provenance (``bounds``, and ``norm``/``eps`` for a budget), so that
``qlib.poison.validate`` checks each: pixels outside [0, 1] are refused unless the provenance
says ``bounds: "none"``, and a declared budget is checked per image.
"""

import torch

from ..poison import BOUNDS

BUDGET_NORMS = ("linf", "l2")


def check_constraints(bounds: str, norm: str | None, eps: float | None) -> None:
    """Refuse an unknown mode, or a budget given half-way."""
    if bounds not in BOUNDS:
        raise ValueError(f"bounds={bounds!r}: allowed is one of {', '.join(BOUNDS)}")
    if (norm is None) != (eps is None):
        raise ValueError(f"a budget around the source image needs both norm and eps, got norm={norm!r}, eps={eps!r}")
    if norm is not None and norm not in BUDGET_NORMS:
        raise ValueError(f"budget norm={norm!r}: allowed is one of {', '.join(BUDGET_NORMS)}")
    if eps is not None and not eps > 0:
        raise ValueError(f"budget eps={eps!r}: allowed is a positive number")


@torch.no_grad()
def project_(x: torch.Tensor, source: torch.Tensor, bounds: str, norm: str | None, eps: float | None) -> None:
    """Project poisons ``x`` (N, C, H, W) in place: onto the ``norm`` ball of radius ``eps`` around ``source``, then
    onto [0, 1] when ``bounds`` is ``"image"``."""
    if norm == "linf":
        x.copy_(source + (x - source).clamp(-eps, eps))
    elif norm == "l2":
        delta = x - source
        size = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.ndim - 1))
        x.copy_(source + delta * (eps / size).clamp(max=1.0))
    if bounds == "image":
        x.clamp_(0, 1)


def provenance(bounds: str, norm: str | None, eps: float | None) -> dict:
    """What a poison's provenance records of its mode (``validate`` checks it)."""
    return {"bounds": bounds, **({"norm": norm, "eps": float(eps)} if norm is not None else {})}
