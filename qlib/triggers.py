"""Backdoor triggers as data: a pattern t (C×H×W, values in [0, 1]) and a mask m (1×H×W or C×H×W, in [0, 1]), and
the class a triggered image should be read as. A triggered image is x' = (1 − m)·x + m·t, the form every patch and
blend backdoor takes:

- BadNets (Gu et al. 2017): m is binary, 1 on a small patch, t the patch's pixels (:func:`patch`);
- Blend (Chen et al. 2017): m is a constant α everywhere, t an image of noise or a picture (:func:`blend`).

A trigger that is not a pattern and a mask, such as WaNet's warp, is a function registered by name in ``WARPS``
(``warp`` names it, ``params`` are its keyword arguments): x' = warp(x, **params).

:func:`check` refuses, in one line naming the value and what is allowed, a pattern or mask whose shape does not
match the images, values outside [0, 1] or not finite, a mask that changes no pixel, and a target class outside the
classes. The attack success rate (:func:`success`) is the share of triggered test images of classes other than the
target that a model reads as the target.
"""

import hashlib
import json
from dataclasses import dataclass, field

import torch
import torch.nn.functional as nnf

from .registry import Registry

WARPS = Registry("warping trigger")


class TriggerError(ValueError):
    """A trigger that cannot be one: the message names the value and what is allowed."""


@dataclass(frozen=True, eq=False)
class Trigger:
    """x' = (1 − m)·x + m·t, or a registered warp. ``blend``: the constant α of a blend mask (None for any other).
    ``source_class``: a class-specific backdoor's source (Sleeper Agent's): only its images are to be misread; None,
    every class but the target (all-to-one)."""

    target_class: int
    pattern: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    blend: float | None = None
    warp: str | None = None
    params: dict = field(default_factory=dict)
    source_class: int | None = None

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The triggered images of ``x`` (N×C×H×W in [0, 1])."""
        if self.warp is not None:
            return WARPS.get(self.warp)(x, **self.params)
        m, t = self.mask.to(x), self.pattern.to(x)
        return (1 - m) * x + m * t

    def describe(self) -> dict:
        """What it is, for a provenance: its kind, target class, mask area or α, and a digest of its tensors."""
        source = {} if self.source_class is None else {"source_class": self.source_class}
        if self.warp is not None:
            return {"kind": self.warp, "target_class": self.target_class, **source, "params": self.params}
        kind = "blend" if self.blend is not None else "patch"
        return {
            "kind": kind,
            "target_class": self.target_class,
            **source,
            **({"alpha": self.blend} if kind == "blend" else {"pixels": int((self.mask > 0).flatten(1).any(0).sum())}),
            "sha256": self.digest(),
        }

    def digest(self) -> str:
        identity = [self.target_class, self.blend, self.warp, self.params]
        h = hashlib.sha256(
            json.dumps(identity + ([self.source_class] if self.source_class is not None else [])).encode()
        )
        for t in (self.pattern, self.mask):
            if t is not None:
                h.update(t.detach().cpu().float().contiguous().numpy().tobytes())
        return h.hexdigest()

    def tensors(self) -> dict[str, torch.Tensor]:
        """Its tensors as an artifact stores them (none for a warp)."""
        return {} if self.warp is not None else {"trigger": self.pattern, "trigger_mask": self.mask}

    def meta(self) -> dict:
        return {
            "target_class": self.target_class,
            "blend": self.blend,
            "warp": self.warp,
            "params": self.params,
            "source_class": self.source_class,
        }

    @classmethod
    def from_artifact(cls, tensors: dict, meta: dict) -> "Trigger":
        return cls(
            meta["target_class"],
            tensors.get("trigger"),
            tensors.get("trigger_mask"),
            meta["blend"],
            meta["warp"],
            meta["params"],
            meta.get("source_class"),
        )


def check(trigger: Trigger, chw: tuple[int, int, int], num_classes: int) -> Trigger:
    """Refuse a trigger that does not fit images of shape ``chw`` and ``num_classes`` classes (module docstring)."""
    c, h, w = chw
    if isinstance(trigger.target_class, bool) or not isinstance(trigger.target_class, int):
        raise TriggerError(f"target_class={trigger.target_class!r}; allowed: an integer class, 0 to {num_classes - 1}")
    if not 0 <= trigger.target_class < num_classes:
        raise TriggerError(f"target_class={trigger.target_class}; allowed: 0 to {num_classes - 1}")
    source = trigger.source_class
    if source is not None and (isinstance(source, bool) or not isinstance(source, int) or not 0 <= source < num_classes
                               or source == trigger.target_class):  # fmt: skip
        raise TriggerError(
            f"source_class={source!r}; allowed: a class 0 to {num_classes - 1} other than the target "
            f"{trigger.target_class}, or none (every other class)"
        )
    if trigger.warp is not None:
        WARPS.get(trigger.warp)  # an unknown name is refused with the registered ones
        return trigger
    if trigger.pattern is None:
        raise TriggerError(
            "a trigger mask without a pattern; allowed: trigger (the pattern) with trigger_mask or blend"
        )
    if trigger.mask is None:
        raise TriggerError("a trigger pattern without a mask; allowed: trigger with trigger_mask or blend")
    if trigger.blend is not None and not 0 < trigger.blend <= 1:
        raise TriggerError(f"blend={trigger.blend!r}; allowed: a number in (0, 1]")
    for name, t, shapes in (
        ("trigger", trigger.pattern, [(c, h, w)]),
        ("trigger_mask", trigger.mask, [(1, h, w), (c, h, w)]),
    ):
        if tuple(t.shape) not in shapes:
            allowed = " or ".join("×".join(map(str, s)) for s in shapes)
            raise TriggerError(f"{name} has shape {'×'.join(map(str, t.shape))}; allowed: {allowed} for these images")
        if not torch.isfinite(t).all():
            raise TriggerError(f"{name} holds {int((~torch.isfinite(t)).sum())} non-finite values (NaN or inf)")
        if t.min() < 0 or t.max() > 1:
            raise TriggerError(f"{name} holds values in [{t.min():.4g}, {t.max():.4g}]; allowed: [0, 1]")
    if not (trigger.mask > 0).any():
        raise TriggerError("trigger_mask is zero everywhere: the trigger changes no pixel; allowed: a mask with m > 0")
    return trigger


def patch(
    chw: tuple[int, int, int],
    target_class: int,
    size: int = 3,
    corner: str = "bottom-right",
    source_class: int | None = None,
) -> Trigger:
    """BadNets' trigger: a ``size``×``size`` checkerboard of 0 and 1 (white top-left) in a ``corner`` of the image,
    one pixel from its edges; binary mask. ``source_class``: for a class-specific backdoor (``Trigger``)."""
    c, h, w = chw
    corners = ("top-left", "top-right", "bottom-left", "bottom-right")
    if corner not in corners:
        raise TriggerError(f"corner={corner!r}; allowed: {', '.join(corners)}")
    if not 1 <= size <= min(h, w) - 2:
        raise TriggerError(f"size={size}; allowed: 1 to {min(h, w) - 2} for {h}×{w} images")
    top = 1 if corner.startswith("top") else h - 1 - size
    left = 1 if corner.endswith("left") else w - 1 - size
    pattern, mask = torch.zeros(c, h, w), torch.zeros(1, h, w)
    board = (torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2 == 0
    pattern[:, top : top + size, left : left + size] = board.float()
    mask[:, top : top + size, left : left + size] = 1
    return Trigger(target_class, pattern, mask, source_class=source_class)


def blend(chw: tuple[int, int, int], target_class: int, alpha: float = 0.2, seed: int = 0) -> Trigger:
    """Blend's trigger: uniform noise in [0, 1] drawn from ``seed``, mixed in with the constant mask α (Chen et al.'s
    random-pattern variant)."""
    if not 0 < alpha <= 1:
        raise TriggerError(f"alpha={alpha!r}; allowed: a number in (0, 1]")
    c, h, w = chw
    pattern = torch.rand(c, h, w, generator=torch.Generator().manual_seed(seed))
    return Trigger(target_class, pattern, torch.full((1, h, w), float(alpha)), blend=float(alpha))


@WARPS.register("wanet")
def wanet(x: torch.Tensor, k: int = 4, strength: float = 0.5, seed: int = 0) -> torch.Tensor:
    """WaNet's warp (Nguyen & Tran 2021): a random k×k field of offsets in [−1, 1], normalised by its mean absolute
    value, upsampled bicubically to the image and scaled by ``strength``/H, added to the identity sampling grid."""
    n, _, h, w = x.shape
    g = torch.Generator().manual_seed(seed)
    offsets = torch.rand(1, 2, k, k, generator=g) * 2 - 1
    offsets = offsets / offsets.abs().mean()
    field = nnf.interpolate(offsets, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    grid = (torch.stack([xs, ys], -1)[None] + strength * field / h).clamp(-1, 1)
    return nnf.grid_sample(x, grid.to(x).expand(n, -1, -1, -1), align_corners=True).clamp(0, 1)


def success(predictions: torch.Tensor, labels: torch.Tensor, trigger: Trigger) -> dict:
    """The attack success rate: of the test images whose true class is the trigger's source class (any class but
    the target, if it names none), the share read as the target once triggered. {"asr", "hits", "n"}."""
    target_class = trigger.target_class
    keep = labels != target_class if trigger.source_class is None else labels == trigger.source_class
    hits = int((predictions[keep] == target_class).sum())
    n = int(keep.sum())
    return {"asr": hits / n if n else float("nan"), "hits": hits, "n": n}
