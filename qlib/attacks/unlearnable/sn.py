"""SN: synthetic, linearly separable noise (Yu et al. 2022, "Availability Attacks Create Shortcuts"; APBench
calls it LSP), a model-free unlearnable example of Section 4.3 (Table 5, row "SN").

The noise of class k is a draw from one Gaussian cluster of sklearn's ``make_classification``, as the
original calls it: ``n_features = n_informative`` = the number of blocks × C, ``n_redundant = n_repeated =
0``, ``n_classes`` = the dataset's, ``n_clusters_per_class = 1``, ``class_sep = 10``, ``flip_y = 0`` (other
arguments at sklearn's defaults: ``hypercube=True``, ``shift=0``, ``scale=1``). So the cluster of class k
is centred on a distinct random vertex of the hypercube {−10, +10}^m and its samples are z·A_k + centre_k
with z ~ N(0, I_m) and A_k uniform in [−1, 1]^{m×m} (a random covariance per class). Each feature fills one
``patch``×``patch`` block of pixels (``patch`` is the original's ``patchsize``, a block's side in pixels, not
the grid's; nearest upsampling of a ⌈H/patch⌉×⌈W/patch⌉ grid per channel, cropped
to H×W: 4×4 blocks of 8×8 on CIFAR-10), then each image's noise is scaled to the L2 norm
√(d·(6/255)²), d = C·H·W (the original's ``l2norm_lim`` with ``linf = 6/255``), added, and clamped to [0, 1].

Deviations from the original:
- our own torch version of ``make_classification``, so the draws differ from sklearn's; its final
  shuffles of samples and of features are left out, as they do not change the distribution;
- each image gets its own draw from its class's cluster (the original draws N samples and hands each class
  the first of its cluster's, the same thing);
- the poison is kept in float (the original rounds the poisoned images down to uint8);
- ``patch`` and ``pixel_scale`` are CIFAR-10's. Fashion-MNIST's are the caller's (``cpu`` preset): patch 7
  keeps the 4×4 grid of blocks on 28×28, and pixel_scale 24/255 (4×) is needed because at 6/255 the poison
  leaves the small CNN's accuracy unchanged (its flat black background clips half of any noise).

Work unit (``qlib.counters``, ``sn_units``): images given noise, counted per class as its cluster's draws are made.
"""

import math

import torch

from ...counters import UNITS, settings
from ...data import Dataset
from ...poison import PoisonSet, poison_count
from ..base import ATTACKS, Needs
from .common import chosen, make_poison, scale_l2, tally


def hypercube_vertices(n: int, dims: int, g: torch.Generator) -> torch.Tensor:
    """``n`` distinct random vertices of {0, 1}^dims (make_classification's ``_generate_hypercube``)."""
    if n > 2**dims:
        raise ValueError(f"{n} classes need distinct vertices, but {{0, 1}}^{dims} has only {2**dims}")
    while True:
        vertices = torch.randint(0, 2, (n, dims), generator=g).float()
        if len(torch.unique(vertices, dim=0)) == n:
            return vertices


def make_classification(y: torch.Tensor, num_classes: int, dims: int, class_sep: float, g: torch.Generator):
    """One draw per label in ``y`` from its class's Gaussian cluster: z·A_k + centre_k (see the docstring). Each
    draw counts as SN's work."""
    centres = class_sep * (2 * hypercube_vertices(num_classes, dims, g) - 1)
    z = torch.randn(len(y), dims, generator=g)
    for k in range(num_classes):
        a = 2 * torch.rand(dims, dims, generator=g) - 1
        mine = y == k
        z[mine] = z[mine] @ a + centres[k]
        tally("sn", int(mine.sum()))
    return z


def sn_noise(
    y: torch.Tensor,
    num_classes: int,
    shape: tuple[int, int, int],
    g: torch.Generator,
    *,
    patch: int,
    class_sep: float,
    radius: float,
) -> torch.Tensor:
    """The noise of labels ``y`` for images of ``shape`` (C, H, W): blocks of ``patch`` pixels, L2 = ``radius``."""
    c, h, w = shape
    grid = (math.ceil(h / patch), math.ceil(w / patch))
    features = make_classification(y, num_classes, c * grid[0] * grid[1], class_sep, g)
    blocks = features.view(len(y), c, *grid).repeat_interleave(patch, 2).repeat_interleave(patch, 3)
    return scale_l2(blocks[..., :h, :w], radius)


@ATTACKS.register("sn", Needs(replaces=True))
def sn(
    clean: Dataset,
    eps_d: float,
    seed: int,
    *,
    patch: int = 8,
    class_sep: float = 10.0,
    pixel_scale: float = 6 / 255,
    device: str = "cpu",
) -> PoisonSet:
    """Add to each chosen image its class's synthetic noise at L2 radius √d·``pixel_scale`` (no surrogate model).

    ``device`` is accepted for a uniform interface; the noise is drawn on the CPU."""
    idx = chosen(clean, eps_d, seed)
    x, y = clean.x[idx], clean.y[idx]
    radius = math.sqrt(x[0].numel()) * pixel_scale
    noise = sn_noise(
        y,
        clean.num_classes,
        tuple(x.shape[1:]),
        torch.Generator().manual_seed(seed),
        patch=patch,
        class_sep=class_sep,
        radius=radius,
    )
    params = {"patch": patch, "class_sep": class_sep, "pixel_scale": pixel_scale}
    return make_poison(clean, idx, x + noise, eps_d, seed, "sn", params, "l2", radius)


@UNITS.register("sn")
def sn_units(n: int, eps_d: float, params: dict) -> int:
    """SN's unit: images given noise, the round(ε_d·N) chosen ones (``params`` change no count)."""
    settings(sn, params)  # a name SN does not take fails here as in the attack
    return poison_count(eps_d, n)
