"""AR: autoregressive perturbations (Sandoval-Segura et al. 2022, "Autoregressive Perturbations for Data
Poisoning"), a model-free unlearnable example of Section 4.3 (Table 5, row "AR").

Each class k owns a causal 3×3 AR process per channel with coefficients b_k (b_k[2, 2] = 0, the eight
others summing to 1). A sample starts as Gaussian noise on an (H + crop)×(W + crop) grid (36×36 on
CIFAR-10); every entry from row 2 and column 2 on is then overwritten, in raster order, by

    x[i, j] = Σ_{r, s} b_k[r, s] · x[i − 2 + r, j − 2 + s],

so only the first two rows and columns keep their noise. The first ``crop`` rows and columns are dropped
and the rest is scaled to L2 norm ``eps`` (1.0, the original's budget), per image. Each image gets its own
sample of its class's process. A filter that is b_k with −1 at [2, 2] answers (almost) zero to process k and
strongly to the others: a shortcut a network learns at once.

Deviations from the original:
- The original ships its CIFAR-10 coefficients as a file (``RANDOM_3C_AR_PARAMS_RNMR_10``) found by its
  greedy search (``autoregressive_param_finder.py``). We re-run that search from a fixed seed
  (``coefficient_seed``), so the coefficients differ from the shipped ones but come from the same procedure:
  draw b ~ N(0, 1) per channel, set b[2, 2] = 0, divide by its sum; keep it only if ``trials`` (3) samples'
  raw cropped L2 norms are finite and ≤ ``max_norm`` (50: the process is stable) and, once another process is
  kept, if the response Σ ReLU(conv(x, filter)) of every earlier kept filter to the last sample (scaled to
  L2 = 1) is ≥ ``min_response`` (10, as for CIFAR-10's shipped file: the processes are distinct). The
  search runs on the data's own channels and grid, so grayscale images get one-channel processes; it takes
  about 30 s on one CPU core for CIFAR-10's shape and is cached per process.
- The per-image start noise is drawn from ``seed``; the coefficients do not depend on it (the original
  uses one fixed file for every run).
- ``eps`` and ``min_response`` are CIFAR-10's (3×32×32). Fashion-MNIST's are the caller's (``cpu`` preset):
  the response of a unit-L2 signal grows like √d, so ``min_response`` 5 ≈ 10·√(784/3072) there.

Work unit (``qlib.counters``, ``ar_units``): images given noise, one AR sample each; the coefficient search (cached,
the same for every run of a shape) is not counted.
"""

import functools

import torch
import torch.nn.functional as nnf

from ... import devices
from ...counters import UNITS, settings
from ...data import Dataset
from ...poison import PoisonSet, poison_count
from ..base import ATTACKS, Needs
from .common import chosen, make_poison, scale_l2, tally

KERNEL = 3
SEARCH_BATCH = 512  # candidates run at once; fixed, since it orders the random draws


def random_coefficients(n: int, channels: int, g: torch.Generator) -> torch.Tensor:
    """``n`` candidate processes: b ~ N(0, 1) per channel, b[2, 2] = 0, normalised to sum 1 (the original's draw)."""
    b = torch.randn(n, channels, KERNEL, KERNEL, generator=g)
    b[..., -1, -1] = 0
    return b / b.sum((2, 3), keepdim=True)


def generate(b: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Run the causal AR recursion with per-sample coefficients ``b`` (N, C, 3, 3) over ``start`` (N, C, h, w)."""
    x = start.permute(2, 3, 0, 1).contiguous()  # h, w, N, C: each grid entry is one contiguous (N, C) block
    h, w = x.shape[:2]
    left2, left1 = b[..., 2, 0], b[..., 2, 1]
    for i in range(KERNEL - 1, h):
        # the two rows above are final, so their part of every window of row i is one vectorised sum
        above = sum(b[..., r, s] * x[i - 2 + r, s : w - 2 + s] for r in range(2) for s in range(KERNEL))
        for j in range(KERNEL - 1, w):
            x[i, j] = above[j - 2] + left2 * x[i, j - 2] + left1 * x[i, j - 1]
    return x.permute(2, 3, 0, 1)


def sample(b: torch.Tensor, size: tuple[int, int], crop: int, g: torch.Generator) -> torch.Tensor:
    """One raw (unscaled) cropped sample per row of ``b``, started from Gaussian noise drawn from ``g`` (CPU)."""
    start = torch.randn(len(b), b.shape[1], size[0] + crop, size[1] + crop, generator=g).to(b.device)
    return generate(b, start)[..., crop:, crop:]


def matching_filter(b: torch.Tensor) -> torch.Tensor:
    """The (1, C, 3, 3) filter b with −1 at [2, 2]: zero on its own process, large on the others."""
    f = b.clone()
    f[:, -1, -1] = -1
    return f.unsqueeze(0)


def response(b: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
    """Σ ReLU(conv(signal, matching filter of b)) per sample of ``signal`` (N, C, h, w)."""
    return nnf.relu(nnf.conv2d(signal, matching_filter(b))).flatten(1).sum(1)


def screen(b: torch.Tensor, size: tuple[int, int], crop: int, trials: int, max_norm: float, g: torch.Generator):
    """The candidates ``b`` whose ``trials`` samples all have a finite raw L2 norm ≤ ``max_norm`` (stable), with
    the last sample of each; trial t runs only on the survivors of trials < t."""
    for _ in range(trials):
        raw = sample(b, size, crop, g)
        norms = raw.flatten(1).norm(dim=1)
        keep = torch.isfinite(norms) & (norms <= max_norm)
        b, raw = b[keep], raw[keep]
    return b, raw


@functools.lru_cache(maxsize=8)
def find_coefficients(
    num_classes: int,
    channels: int,
    size: tuple[int, int],
    crop: int,
    seed: int,
    *,
    max_norm: float,
    min_response: float,
    trials: int,
    max_candidates: int,
) -> torch.Tensor:
    """(num_classes, C, 3, 3) stable, mutually distinct AR processes: the original's greedy search
    (``autoregressive_param_finder.py``), candidates drawn ``SEARCH_BATCH`` at a time from ``seed``. A kept
    process is the next stable candidate whose last sample (at L2 = 1) every earlier kept filter answers with
    a response ≥ ``min_response``. Cached: the search is deterministic and the same for every attack seed."""
    g = torch.Generator().manual_seed(seed)
    kept = []
    for _ in range(0, max_candidates, SEARCH_BATCH):
        b, raw = screen(random_coefficients(SEARCH_BATCH, channels, g), size, crop, trials, max_norm, g)
        for candidate, last in zip(b, scale_l2(raw, 1.0)):
            if all(response(other, last[None]).item() >= min_response for other in kept):
                kept.append(candidate)
            if len(kept) == num_classes:
                return torch.stack(kept)
    raise RuntimeError(
        f"found {len(kept)} of {num_classes} AR processes in {max_candidates} candidates; "
        f"lower min_response={min_response} or raise max_norm={max_norm}"
    )


@ATTACKS.register("ar", Needs(replaces=True))
def ar(
    clean: Dataset,
    eps_d: float,
    seed: int,
    *,
    eps: float = 1.0,
    crop: int = 4,
    max_norm: float = 50.0,
    min_response: float = 10.0,
    trials: int = 3,
    max_candidates: int = 1_000_000,
    coefficient_seed: int = 0,
    device: str = "cpu",
) -> PoisonSet:
    """Add to each chosen image an L2-``eps`` sample of its class's AR process (no surrogate model).

    The coefficient search runs on the CPU, so its choices do not depend on ``device``; the samples run there."""
    idx = chosen(clean, eps_d, seed)
    x, y = clean.x[idx], clean.y[idx]
    size = tuple(x.shape[-2:])
    coefficients = find_coefficients(
        clean.num_classes,
        x.shape[1],
        size,
        crop,
        coefficient_seed,
        max_norm=max_norm,
        min_response=min_response,
        trials=trials,
        max_candidates=max_candidates,
    )
    b = coefficients[y].to(devices.resolve(device))
    noise = scale_l2(sample(b, size, crop, torch.Generator().manual_seed(seed)), eps).cpu()
    tally("ar", len(b))
    params = {
        "eps": eps,
        "crop": crop,
        "max_norm": max_norm,
        "min_response": min_response,
        "trials": trials,
        "max_candidates": max_candidates,
        "coefficient_seed": coefficient_seed,
    }
    return make_poison(clean, idx, x + noise, eps_d, seed, "ar", params, "l2", eps, coefficients=coefficients.tolist())


@UNITS.register("ar")
def ar_units(n: int, eps_d: float, params: dict) -> int:
    """AR's unit: images given noise, the round(ε_d·N) chosen ones (``params`` change no count)."""
    settings(ar, params)  # a name AR does not take fails here as in the attack
    return poison_count(eps_d, n)
