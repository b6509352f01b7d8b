"""OPS: the one-pixel shortcut (Wu et al. 2023, "One-Pixel Shortcut: on the Learning Preference of Deep
Neural Networks"), a model-free unlearnable example of Section 4.3 (Table 5, row "OPS").

For each class k in turn, over that class's images x_i, OPS scores every pixel position p and every extreme
colour c ∈ {0, 1}^C (8 for RGB, 2 for grayscale) by

    s_k(p, c) = mean_{i, ch} |c_ch − x_i,ch(p)| / std_{i, ch} |c_ch − x_i,ch(p)|,

the mean and the (population) standard deviation taken over the class's images and the channels together, as
in the original's ``pixel_search`` (``np.mean`` / ``np.std`` of an N×C array). A (position, colour) pair
chosen by an earlier class is excluded, and the best pair is set in every image of class k: the pixel is far
from the class's usual colour there and stable across the class, so a network learns it first. The L0 budget
is one pixel position per image. Colour index j has channel ch = bit C − 1 − ch of j (the original's order).

Deviations from the original (none change a choice on natural images):
- a pair whose distances are all 0 (the pixel already has colour c in every image) scores 0, not NaN, and
  one whose distances are all equal and positive scores +∞ (the original divides by 0; NumPy's sort would
  rank NaN above everything and pick a pair that changes nothing);
- ties go to the first pair in (row, column, colour) order (the original's unstable argsort leaves this open);
- excluded pairs score −∞, not 0, so they are never chosen.

Work unit (``qlib.counters``, ``ops_units``): images searched, counted per class as its pixels are scored.
"""

import torch

from ... import devices
from ...counters import UNITS, settings
from ...data import Dataset
from ...poison import PoisonSet, poison_count
from ..base import ATTACKS, Needs
from .common import chosen, make_poison, tally


def extreme_colours(channels: int) -> torch.Tensor:
    """The 2^C colours of {0, 1}^C, (2^C, C); colour j has channel ch = bit C − 1 − ch of j."""
    j = torch.arange(2**channels)
    return torch.stack([(j >> (channels - 1 - ch)) & 1 for ch in range(channels)], 1).double()


def scores(x: torch.Tensor) -> torch.Tensor:
    """s(p, c) of images ``x`` (N, C, H, W) for every position and extreme colour, (H, W, 2^C), in float64."""
    x = x.double()
    out = []
    for colour in extreme_colours(x.shape[1]).to(x.device):
        distance = (colour.view(1, -1, 1, 1) - x).abs()
        mean, std = distance.mean((0, 1)), distance.std((0, 1), correction=0)
        out.append(torch.where(mean > 0, mean / std, torch.zeros_like(mean)))
    return torch.stack(out, -1)


def search(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict[int, tuple[int, int, int]]:
    """{class: (row, col, colour index)} maximising s_k, classes in order, each pair used by one class only.
    Each class's images count as OPS's work."""
    y = y.to(x.device)
    taken = []
    choice = {}
    for k in range(num_classes):
        if not (y == k).any():
            continue
        images = x[y == k]
        s = scores(images).cpu()
        tally("ops", len(images))
        for pair in taken:
            s[pair] = -torch.inf
        best = tuple(int(i) for i in torch.unravel_index(s.argmax(), s.shape))  # argmax: the first maximum
        taken.append(best)
        choice[k] = best
    return choice


@ATTACKS.register("ops", Needs(replaces=True))
def ops(clean: Dataset, eps_d: float, seed: int, *, device: str = "cpu") -> PoisonSet:
    """Set each class's best (pixel, extreme colour) in every chosen image of the class (no surrogate model)."""
    idx = chosen(clean, eps_d, seed)
    x, y = clean.x[idx].clone(), clean.y[idx]
    choice = search(x.to(devices.resolve(device)), y, clean.num_classes)
    colours = extreme_colours(x.shape[1]).to(x.dtype)
    for k, (row, col, colour) in choice.items():
        x[y == k, :, row, col] = colours[colour]
    pixels = [
        {"class": k, "row": row, "col": col, "colour": colours[colour].int().tolist()}
        for k, (row, col, colour) in choice.items()
    ]
    return make_poison(clean, idx, x, eps_d, seed, "ops", {}, "l0", 1, pixels=pixels)


@UNITS.register("ops")
def ops_units(n: int, eps_d: float, params: dict) -> int:
    """OPS's unit: images searched, the round(ε_d·N) chosen ones."""
    settings(ops, params)  # a name OPS does not take fails here as in the attack
    return poison_count(eps_d, n)
