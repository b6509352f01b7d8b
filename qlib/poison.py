"""The poisoned set ν: images, labels, where each poison started from, its budget ε_d and its provenance; the rules
every poison set follows (:func:`validate`); and poison files, read (:func:`load_poison`) and written
(:meth:`PoisonSet.save_npz`), so that poisons made elsewhere can be evaluated here and ours elsewhere.

Following Witches' Brew, a poison set carries the indices of the clean images its points were
initialised from, so it can be audited against μ and re-created from its provenance. Inside qlib the indices
refer to the training set the poison was made on (the preset's subset); in a file they refer to the full
training split in its published order, the order ``qlib.data.load`` reads it in (``Dataset.origin`` maps one
onto the other).

A poison file is one of:

- a qlib PoisonSet artifact (``stem.safetensors`` + ``stem.json``, as the cache holds them), whose indices refer
  to the training set it was made on: load it with that set;
- a numpy ``.npz`` (read with ``allow_pickle=False``) with ``x`` (N×H×W×C or N×C×H×W; uint8 0-255 or float 0-1)
  and ``y`` (integer classes), and optionally ``indices`` (the source images in the full training split),
  ``mode`` (``"add"``: appended to μ, the default; ``"replace"``: each poison takes its source image's place,
  indices required), ``bounds`` (``"none"``: float pixels outside [0, 1], the official code's unclipped
  poisons), ``target_index`` (a test image, in the full test split) with ``adversarial_class``, and
  ``provenance`` (JSON text);
- a folder of PNG files with ``labels.csv`` (columns ``file``, ``label`` and optionally ``index``) and optionally
  ``poison.json`` holding the scalar fields of the ``.npz`` (``SCALARS``), with a backdoor's ``trigger.png`` and
  ``mask.png``.

A backdoor's file also holds its trigger (``qlib.triggers``): ``trigger``, the pattern t (H×W×C, C×H×W or H×W;
uint8 or float in [0, 1]), with either ``trigger_mask`` m (H×W, H×W×C or C×H×W) or ``blend`` (a constant α), and
``target_class`` (and, for a class-specific backdoor, ``source_class``); the test images are then triggered,
x' = (1 − m)·x + m·t, to measure the attack success rate.
"""

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import artifacts
from .data import SOURCES, Dataset
from .triggers import Trigger, TriggerError
from .triggers import check as check_trigger

FILE_MODES = {"add": "append", "replace": "replace"}  # a file's word -> the provenance's
BOUNDS = ("image", "none")  # pixels in [0, 1], or unbounded (the official GC and TGDA code): qlib.attacks.constraints
NPZ_FIELDS = (
    "x",
    "y",
    "indices",
    "mode",
    "bounds",
    "target_index",
    "adversarial_class",
    "provenance",
    *("trigger", "trigger_mask", "blend", "target_class", "source_class"),  # a backdoor's trigger (qlib.triggers)
)
SCALARS = ("mode", "bounds", "target_index", "adversarial_class", "blend", "target_class", "source_class")
PIXELS = ("float", "uint8")  # evaluate the poison as read, or rounded to 8-bit images first


class PoisonFileError(ValueError):
    """A poison file that cannot be read as one: the message names the problem and what is allowed."""


def check_budget(eps_d: float) -> float:
    """ε_d is a fraction of the clean training set: it must lie in (0, 1]."""
    if isinstance(eps_d, bool) or not isinstance(eps_d, (int, float)) or not 0 < eps_d <= 1:
        raise ValueError(f"budget eps_d={eps_d!r}: allowed is a number in (0, 1]")
    return float(eps_d)


@dataclass
class PoisonSet:
    """ν for μ + ν. ``provenance`` names the attack, its parameters and its seed (JSON-serialisable). Images lie in
    [0, 1] unless the provenance declares ``bounds: "none"`` (``qlib.attacks.constraints``)."""

    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor
    eps_d: float
    provenance: dict = field(default_factory=dict)
    trigger: Trigger | None = None  # a backdoor's trigger (qlib.triggers), which the test images get at evaluation

    def __post_init__(self):
        check_budget(self.eps_d)
        n = len(self.x)
        if self.x.ndim != 4 or not self.x.is_floating_point():
            raise ValueError(f"poison images must be float NCHW, got {tuple(self.x.shape)} {self.x.dtype}")
        if self.y.shape != (n,) or self.y.dtype != torch.int64:
            raise ValueError(f"poison labels must be int64 of shape ({n},), got {tuple(self.y.shape)} {self.y.dtype}")
        if self.indices.shape != (n,) or self.indices.dtype != torch.int64:
            raise ValueError(f"poison indices must be int64 of shape ({n},), got {tuple(self.indices.shape)}")
        if n and not torch.isfinite(self.x).all():
            raise ValueError(
                f"poison images hold {int((~torch.isfinite(self.x)).sum())} non-finite values (NaN or inf)"
            )
        if n and self.provenance.get("bounds") != "none" and (self.x.min() < 0 or self.x.max() > 1):
            raise ValueError(
                f"poison images leave [0, 1]: range [{self.x.min():.4g}, {self.x.max():.4g}]; only a poison "
                "whose provenance declares bounds: 'none' (not images) may"
            )

    def __len__(self) -> int:
        return len(self.y)

    def digest(self) -> str:
        """A SHA-256 over the tensors, the budget and the provenance: the poison's identity in cache keys."""
        meta = {"eps_d": self.eps_d, "provenance": self.provenance}
        if self.trigger is not None:
            meta["trigger"] = self.trigger.digest()
        return artifacts.tensor_digest((self.x, self.y, self.indices), meta)

    def save(self, stem, **meta) -> None:
        """Write ``stem.safetensors`` and ``stem.json`` atomically; ``meta`` (JSON) is kept in the manifest."""
        trigger = {} if self.trigger is None else {"trigger": self.trigger.meta()}
        artifacts.save(
            stem,
            {"x": self.x, "y": self.y, "indices": self.indices, **(self.trigger.tensors() if self.trigger else {})},
            {**meta, "kind": "PoisonSet", "eps_d": self.eps_d, "provenance": self.provenance, **trigger},
        )

    def save_npz(self, path, clean, test=None) -> Path:
        """Export to ``path`` (``.npz``, written atomically) in the layout :func:`load_poison` reads: ``x`` float32
        N×C×H×W as it is (never rounded: a poison declared ``bounds: none`` keeps its pixels outside [0, 1]), ``y``,
        ``indices`` mapped through ``clean.origin`` onto the full training split (``clean``: the set the poison was
        made on), ``mode``, ``bounds``, ``provenance`` (JSON) and, for a targeted poison, ``target_index`` mapped
        through ``test.origin`` onto the full test split, with ``adversarial_class``."""
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"export path {str(path)!r}: allowed is a file name ending in .npz")
        if clean.origin is None:
            raise ValueError("save_npz needs the training set the poison was made on, as loaded (with its origin)")
        arrays = {
            "x": self.x.detach().cpu().float().numpy(),
            "y": self.y.numpy(),
            "mode": np.array("replace" if self.provenance.get("mode") == "replace" else "add"),
            "bounds": np.array(self.provenance.get("bounds", "image")),
            "provenance": np.array(json.dumps(self.provenance, sort_keys=True)),
        }
        if len(self) and (self.indices >= 0).all():
            arrays["indices"] = clean.origin[self.indices].numpy()
        elif self.provenance.get("mode") == "replace":
            raise ValueError("a replace-mode poison needs every source index to be exported")
        if self.trigger is not None:
            if self.trigger.warp is not None:
                raise ValueError(f"a warping trigger ({self.trigger.warp}) is a function: a .npz holds patterns only")
            arrays["trigger"] = self.trigger.pattern.float().numpy()
            arrays["target_class"] = np.array(self.trigger.target_class)
            if self.trigger.source_class is not None:
                arrays["source_class"] = np.array(self.trigger.source_class)
            if self.trigger.blend is not None:
                arrays["blend"] = np.array(self.trigger.blend)
            else:
                arrays["trigger_mask"] = self.trigger.mask.float().numpy()
        if self.provenance.get("target_index") is not None:
            if test is None or test.origin is None:
                raise ValueError("a targeted poison's target_index refers to the test set: pass it as test=")
            arrays["target_index"] = np.array(int(test.origin[self.provenance["target_index"]]))
            arrays["adversarial_class"] = np.array(int(self.provenance["adversarial_class"]))

        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        artifacts.atomic_write(path, write)
        return path

    @classmethod
    def load(cls, stem) -> "PoisonSet":
        return cls.from_artifact(stem, *artifacts.load(stem))

    @classmethod
    def from_artifact(cls, stem, tensors: dict, meta: dict) -> "PoisonSet":
        """The PoisonSet held by an artifact already read (and checksummed) from ``stem``."""
        drawn = "trigger" in meta and meta["trigger"]["warp"] is None  # a pattern and a mask, not a warp
        expected = {"x", "y", "indices"} | ({"trigger", "trigger_mask"} if drawn else set())
        if meta.get("kind") != "PoisonSet" or set(tensors) != expected:
            raise artifacts.ArtifactError(
                f"artifact {stem} is not a PoisonSet (kind={meta.get('kind')!r}, tensors={sorted(tensors)})"
            )
        trigger = Trigger.from_artifact(tensors, meta["trigger"]) if "trigger" in meta else None
        return cls(tensors["x"], tensors["y"], tensors["indices"], meta["eps_d"], meta["provenance"], trigger)


# -- the rules every poison set follows ----------------------------------------------------------------------
# A poison is appended to μ (``provenance["mode"]`` "append", the default) or replaces the images it was made from
# ("replace": unlearnable examples, targeted poisons). A poison that declares a perturbation budget
# (``provenance["norm"]`` in "linf", "l2", "l0" and ``provenance["eps"]``) is checked against it, per image. Pixels
# lie in [0, 1] unless the provenance declares ``bounds: "none"`` (appended poisons only).

LABEL_RULES = ("kept", "flipped", "target")  # flipped: y ← C − 1 − y; target: y ← the trigger's target class
MODES = ("append", "replace")
NORMS = ("linf", "l2", "l0")  # l0 counts changed pixel positions (all channels of a position count once)
TOLERANCE = 1e-5  # float slack when checking a declared L∞ or L2 budget (L0 counts any change)


def poison_count(eps_d: float, n: int) -> int:
    """round(ε_d·N), the number of poisons a budget buys; at least one."""
    k = round(check_budget(eps_d) * n)
    if k < 1:
        raise ValueError(f"budget eps_d={eps_d} of {n} training images rounds to zero poisons")
    return k


def expected_labels(poison: PoisonSet, clean: Dataset) -> torch.Tensor:
    rule = poison.provenance.get("labels")
    if rule not in LABEL_RULES:
        raise ValueError(f"poison provenance labels={rule!r}; valid: {', '.join(LABEL_RULES)}")
    source = clean.y[poison.indices]
    if rule == "target":
        if poison.trigger is None:
            raise ValueError(
                "poison provenance labels='target' names the trigger's class, but the poison has no trigger"
            )
        return torch.full_like(source, poison.trigger.target_class)
    return source if rule == "kept" else clean.num_classes - 1 - source


def perturbation_norms(poison: PoisonSet, clean: Dataset, norm: str) -> torch.Tensor:
    """‖x_poison − x_source‖ per poison, in ``norm`` ("linf", "l2" or "l0")."""
    if norm not in NORMS:
        raise ValueError(f"unknown perturbation norm {norm!r}; valid: {', '.join(NORMS)}")
    delta = (poison.x - clean.x[poison.indices].to(poison.x)).flatten(2)  # N, C, H·W
    if norm == "linf":
        return delta.abs().flatten(1).amax(1)
    if norm == "l2":
        return delta.flatten(1).norm(dim=1)
    return (delta != 0).any(1).sum(1).to(poison.x.dtype)


def check_perturbation(poison: PoisonSet, clean: Dataset) -> None:
    norm, eps = poison.provenance["norm"], poison.provenance.get("eps")
    if not isinstance(eps, (int, float)) or eps <= 0:
        raise ValueError(f"poison provenance eps={eps!r} must be a positive perturbation budget")
    norms = perturbation_norms(poison, clean, norm)
    if not (norms <= eps + TOLERANCE).all():
        worst = int(norms.argmax())
        raise ValueError(
            f"poison {worst} (source image {int(poison.indices[worst])}) leaves its {norm} budget "
            f"eps={eps:.6g}: its perturbation has {norm} norm {norms[worst].item():.6g}"
        )


def validate(poison: PoisonSet, clean: Dataset) -> PoisonSet:
    """Check ``poison`` against the clean set it was made from; raise ValueError naming what is wrong."""
    n, k = len(clean), poison_count(poison.eps_d, len(clean))
    if len(poison) != k:
        raise ValueError(f"{len(poison)} poisons for eps_d={poison.eps_d} of {n} images; expected round(eps_d·N) = {k}")
    if poison.x.shape[1:] != clean.x.shape[1:]:
        raise ValueError(f"poison images are {tuple(poison.x.shape[1:])}, clean images {tuple(clean.x.shape[1:])}")
    if len(poison) and (poison.indices.min() < 0 or poison.indices.max() >= n):
        raise ValueError(f"poison source indices leave [0, {n})")
    if len(torch.unique(poison.indices)) != len(poison):
        raise ValueError("poison source indices repeat: each poison must start from its own clean image")
    for required in ("attack", "params", "seed"):
        if required not in poison.provenance:
            raise ValueError(f"poison provenance lacks {required!r}")
    if poison.trigger is not None:
        check_trigger(poison.trigger, tuple(clean.x.shape[1:]), clean.num_classes)
    if not torch.equal(poison.y, expected_labels(poison, clean)):
        raise ValueError(
            f"poison labels do not follow the {poison.provenance['labels']!r} rule for their source images"
        )
    if (bounds := poison.provenance.get("bounds", "image")) not in BOUNDS:
        raise ValueError(f"poison provenance bounds={bounds!r}; valid: {', '.join(BOUNDS)}")
    if bounds == "none" and poison.provenance.get("mode") == "replace":
        raise ValueError(
            "a poison that replaces training images must be images: bounds 'none' is for appended poisons only"
        )
    if poison.provenance.get("mode", "append") not in MODES:
        raise ValueError(f"poison provenance mode={poison.provenance['mode']!r}; valid: {', '.join(MODES)}")
    if poison.provenance.get("mode") == "replace" and "norm" not in poison.provenance:
        raise ValueError(
            "a poison that replaces training images must declare its perturbation budget (provenance norm and eps)"
        )
    if "norm" in poison.provenance:
        check_perturbation(poison, clean)
    adversarial = poison.provenance.get("adversarial_class")  # targeted attacks: poisons come from that class
    if adversarial is not None and not (clean.y[poison.indices] == adversarial).all():
        raise ValueError(
            f"poisons of a targeted attack must come from its adversarial class {adversarial}; "
            f"source classes {sorted(set(clean.y[poison.indices].tolist()))}"
        )
    return poison


# -- reading poison files -------------------------------------------------------------------------------------


def load_poison(path, clean, split_size: int | None = None, test_size: int | None = None) -> PoisonSet:
    """The poison in the file or folder at ``path`` (see the module docstring), checked against ``clean``, the
    training set it will join (the preset's subset, as loaded). Its ``indices`` become places in ``clean`` (-1: a
    source outside it, or none given); a replace-mode poison must have every source inside it. ``split_size`` and
    ``test_size``: the sizes of the full training and test splits (default: the dataset's published sizes).
    ``provenance["read"]`` states what was detected (format, layout, pixel range) and how many sources fall inside
    ``clean``. Anything else is refused with a :class:`PoisonFileError` that names the problem."""
    path = Path(path)
    if _is_artifact(path):
        return _load_artifact(path, clean)
    if path.is_dir():
        fields, form = _read_png_folder(path), "folder of PNG files with labels.csv"
    elif path.suffix == ".npz" and path.is_file():
        fields, form = _read_npz(path), "numpy .npz"
    else:
        raise PoisonFileError(
            f"poison file {str(path)!r}: not found or not a poison file; allowed: a .npz, a folder of "
            "PNG files with labels.csv, or a qlib PoisonSet (stem.safetensors + stem.json)"
        )
    return _from_fields(
        fields, clean, {"file": path.name, "format": form, "sha256": fingerprint(path)}, split_size, test_size
    )


def fingerprint(path) -> str:
    """SHA-256 of a poison file, or of a folder's files (names and bytes, sorted), or of an artifact's manifest."""
    path = Path(path)
    if _is_artifact(path):
        path = artifacts.paths(_stem(path))[1]
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        h.update(f.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        h.update(f.read_bytes())
    return h.hexdigest()


def as_uint8(poison: PoisonSet) -> PoisonSet:
    """``poison`` as a released poison is saved, as 8-bit images: each pixel clipped to [0, 1] and rounded to the
    nearest of 256 levels. ``provenance["pixels"]`` records it, with how many pixel values were clipped (a poison
    declared ``bounds: none`` becomes images here)."""
    clipped = int(((poison.x < 0) | (poison.x > 1)).sum())
    x = poison.x.clamp(0, 1).mul(255).round().div(255)
    provenance = {**poison.provenance, "bounds": "image", "pixels": {"rounded to": "uint8", "values clipped": clipped}}
    return PoisonSet(x, poison.y, poison.indices, poison.eps_d, provenance)


def describe(poison: PoisonSet) -> str:
    """One line on what :func:`load_poison` read and detected."""
    read = poison.provenance.get("read", {})
    src = read.get("sources", {})
    sources = (
        f"{src['inside']} of {src['given']} source images inside the training set of {src['of']}"
        if src.get("given")
        else "no source indices"
    )
    target = (
        f"; targeted: test image {poison.provenance['target_index']} → class {poison.provenance['adversarial_class']}"
        if poison.provenance.get("target_index") is not None
        else ""
    )
    return (
        f"{read.get('file', '?')}: {read.get('format', '?')}; {len(poison)} poisons, "
        f"{'replacing their sources' if poison.provenance.get('mode') == 'replace' else 'appended'} "
        f"(ε_d = {poison.eps_d:.4g}); layout {read.get('layout', '?')}; pixels {read.get('pixels', '?')}; "
        f"{sources}{target}{backdoor(poison)}"
    )


def backdoor(poison: PoisonSet) -> str:
    """ "; backdoor: …" naming its trigger and target class, or "" for a poison without one."""
    if poison.trigger is None:
        return ""
    d = poison.trigger.describe()
    what = {"patch": f"a patch of {d.get('pixels')} pixels", "blend": f"a blend at α = {d.get('alpha')}"}
    return f"; backdoor: {what.get(d['kind'], d['kind'])} → class {d['target_class']}"


def _is_artifact(path: Path) -> bool:
    return path.suffix in (".safetensors", ".json") or artifacts.exists(path)


def _stem(path: Path) -> Path:
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def _load_artifact(path: Path, clean) -> PoisonSet:
    stem = _stem(path)
    poison = PoisonSet.load(stem)
    try:
        validate(poison, clean)
    except ValueError as e:
        raise PoisonFileError(
            f"qlib PoisonSet {stem}: {e} (its indices refer to the training set it was made on: "
            "evaluate it with that preset and train_size)"
        ) from None
    read = {
        "file": stem.name,
        "format": "qlib PoisonSet",
        "sha256": fingerprint(path),
        "layout": "N×C×H×W",
        "pixels": "float, as made",
        "sources": {"given": len(poison), "inside": len(poison), "of": len(clean)},
    }
    return PoisonSet(poison.x, poison.y, poison.indices, poison.eps_d, {**poison.provenance, "read": read})


def _read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as f:
            fields = {k: f[k] for k in f.files}
    except ValueError as e:  # an object array: a pickle, which is never loaded
        raise PoisonFileError(
            f"{path.name}: {e}; allowed: plain numeric and string arrays (no pickled objects)"
        ) from None
    except (OSError, EOFError) as e:
        raise PoisonFileError(f"{path.name} cannot be read as a numpy .npz ({e})") from None
    unknown = sorted(set(fields) - set(NPZ_FIELDS))
    if unknown:
        raise PoisonFileError(f"{path.name}: unknown array(s) {unknown}; allowed: {', '.join(NPZ_FIELDS)}")
    return fields


def _read_png_folder(folder: Path) -> dict:
    table = folder / "labels.csv"
    if not table.is_file():
        raise PoisonFileError(
            f"folder {folder.name}: no labels.csv; a PNG folder needs labels.csv with columns file, "
            "label and optionally index"
        )
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0]) if rows else set()
    if not rows or not {"file", "label"} <= columns or not columns <= {"file", "label", "index"}:
        raise PoisonFileError(
            f"{table}: columns {sorted(columns)}; allowed: file, label and optionally index, one row per image"
        )
    images = []
    for row in rows:
        png = folder / row["file"]
        if png.suffix.lower() != ".png" or not png.is_file():
            raise PoisonFileError(f"{table}: file {row['file']!r} is not a PNG file in {folder.name}")
        with Image.open(png) as im:
            if im.mode not in ("L", "RGB"):
                raise PoisonFileError(f"{png.name}: PNG mode {im.mode!r}; allowed: L (grayscale, 8-bit) or RGB (8-bit)")
            a = np.asarray(im, dtype=np.uint8)
        images.append(a[..., None] if a.ndim == 2 else a)
    if len({a.shape for a in images}) > 1:
        raise PoisonFileError(
            f"folder {folder.name}: the PNG files differ in size: {sorted({a.shape for a in images})}"
        )

    def integers(name):
        try:
            return np.array([int(r[name]) for r in rows], dtype=np.int64)
        except ValueError:
            raise PoisonFileError(f"{table}: column {name} holds a value that is not an integer") from None

    fields = {"x": np.stack(images), "y": integers("label")}
    if "index" in columns:
        fields["indices"] = integers("index")
    meta = folder / "poison.json"
    if meta.is_file():
        try:
            extra = json.loads(meta.read_text())
        except json.JSONDecodeError as e:
            raise PoisonFileError(f"{meta}: not JSON ({e})") from None
        if not isinstance(extra, dict) or not set(extra) <= set(SCALARS):
            raise PoisonFileError(f"{meta}: allowed is a JSON object with keys among {', '.join(SCALARS)}")
        fields |= {k: np.array(v) for k, v in extra.items()}
    for name, png in (("trigger", "trigger.png"), ("trigger_mask", "mask.png")):  # a backdoor's pattern and mask
        if (folder / png).is_file():
            with Image.open(folder / png) as im:
                if im.mode not in ("L", "RGB"):
                    raise PoisonFileError(f"{png}: PNG mode {im.mode!r}; allowed: L (grayscale, 8-bit) or RGB (8-bit)")
                a = np.asarray(im, dtype=np.uint8)
            fields[name] = a[..., None] if a.ndim == 2 else a
    return fields


def _scalar(fields: dict, name: str, kind: str):
    """The 0-d field ``name`` as a str or int (``kind``), None if absent."""
    if name not in fields:
        return None
    a = fields[name]
    if a.shape != ():
        raise PoisonFileError(f"{name} has shape {a.shape}; allowed: a single value")
    if kind == "str" and a.dtype.kind == "U":
        return str(a[()])
    if kind == "int" and a.dtype.kind in "iu":
        return int(a[()])
    raise PoisonFileError(f"{name}={a[()]!r} ({a.dtype}); allowed: {'a string' if kind == 'str' else 'an integer'}")


def _layout(x: np.ndarray, chw: tuple[int, int, int], dataset: str) -> tuple[np.ndarray, str]:
    c, h, w = chw
    allowed = f"N×C×H×W = N×{c}×{h}×{w} or N×H×W×C = N×{h}×{w}×{c} for {dataset}"
    if x.ndim != 4:
        raise PoisonFileError(f"x has shape {x.shape}; allowed: {allowed}")
    if x.shape[1:] == (c, h, w):
        return x, "N×C×H×W" + (" (C = H = W: read as N×C×H×W)" if (h, w, c) == (c, h, w) else "")
    if x.shape[1:] == (h, w, c):
        return x.transpose(0, 3, 1, 2), "N×H×W×C, transposed to N×C×H×W"
    raise PoisonFileError(f"x has shape {x.shape}, which matches no layout; allowed: {allowed}")


def _pixels(x: np.ndarray, bounds: str) -> tuple[torch.Tensor, str]:
    if x.dtype == np.uint8:
        if bounds == "none":
            raise PoisonFileError(
                "bounds 'none' declares float pixels outside [0, 1], but x is uint8; allowed: "
                "float x with bounds 'none', or uint8 x with bounds 'image'"
            )
        return torch.from_numpy(x.astype(np.float32) / 255), "uint8 0-255, divided by 255"
    if x.dtype.kind != "f":
        raise PoisonFileError(
            f"x has dtype {x.dtype}; allowed: uint8 (0-255) or float (0-1); convert 0-255 integers "
            "with x.astype(np.uint8)"
        )
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if len(t) and not torch.isfinite(t).all():
        raise PoisonFileError(f"x holds {int((~torch.isfinite(t)).sum())} non-finite values (NaN or inf)")
    if bounds == "none":
        return t, f"{x.dtype} as float32, bounds none (not images; never rounded)"
    if len(t) and (t.min() < 0 or t.max() > 1):
        hint = " (0-255 values: save them as uint8)" if t.max() > 1.5 else ""
        raise PoisonFileError(
            f"x holds values in [{t.min():.4g}, {t.max():.4g}], outside the declared range [0, 1] of "
            f"float images{hint}; allowed: float in [0, 1], uint8 0-255, or bounds 'none' for "
            "poisons that are not images"
        )
    return t, f"{x.dtype} 0-1" + (", as float32" if x.dtype != np.float32 else "")


def _from_fields(fields: dict, clean, read: dict, split_size: int | None, test_size: int | None) -> PoisonSet:
    published = SOURCES.get(clean.name).sizes if clean.name in SOURCES.names() else {}
    split_size = split_size or published.get("train") or (int(clean.origin.max()) + 1)
    test_size = test_size or published.get("test")
    for name in ("x", "y"):
        if name not in fields:
            raise PoisonFileError(f"{read['file']}: no {name!r}; a poison file holds x (images) and y (labels)")
    mode = _scalar(fields, "mode", "str") or "add"
    if mode not in FILE_MODES:
        raise PoisonFileError(f"mode={mode!r}; allowed: {', '.join(FILE_MODES)}")
    bounds = _scalar(fields, "bounds", "str") or "image"
    if bounds not in BOUNDS:
        raise PoisonFileError(f"bounds={bounds!r}; allowed: {', '.join(BOUNDS)}")
    if bounds == "none" and mode == "replace":
        raise PoisonFileError(
            "bounds 'none' with mode 'replace': a poison that replaces training images must be images"
        )
    x, layout = _layout(fields["x"], tuple(clean.x.shape[1:]), clean.name)
    x, pixels = _pixels(x, bounds)
    n = len(x)
    if n == 0:
        raise PoisonFileError("x holds no images")
    y = fields["y"]
    if y.shape != (n,) or y.dtype.kind not in "iu":
        raise PoisonFileError(f"y has shape {y.shape} and dtype {y.dtype}; allowed: {n} integer labels, one per image")
    if y.min() < 0 or y.max() >= clean.num_classes:
        bad = y[(y < 0) | (y >= clean.num_classes)]
        raise PoisonFileError(
            f"y holds label {int(bad[0])} ({len(bad)} labels outside the classes); allowed: 0 to "
            f"{clean.num_classes - 1} ({clean.name} has {clean.num_classes} classes)"
        )
    sources = {"given": 0, "inside": 0, "of": len(clean)}
    positions = torch.full((n,), -1, dtype=torch.int64)
    if "indices" in fields:
        idx = fields["indices"]
        if idx.shape != (n,) or idx.dtype.kind not in "iu":
            raise PoisonFileError(
                f"indices has shape {idx.shape} and dtype {idx.dtype}; allowed: {n} integers, one per image"
            )
        idx = idx.astype(np.int64)
        if idx.min() < 0 or idx.max() >= split_size:
            bad = idx[(idx < 0) | (idx >= split_size)]
            raise PoisonFileError(
                f"indices holds {int(bad[0])} ({len(bad)} out of range); allowed: 0 to {split_size - 1}, "
                f"places in the full {clean.name} training split of {split_size} images"
            )
        values, counts = np.unique(idx, return_counts=True)
        if (counts > 1).any():
            raise PoisonFileError(
                f"indices repeat: {int(values[counts > 1][0])} appears {int(counts.max())} times "
                f"({int((counts > 1).sum())} repeated); allowed: distinct source images"
            )
        positions = clean.positions(torch.from_numpy(idx))
        sources |= {"given": n, "inside": int((positions >= 0).sum())}
    if mode == "replace":
        if "indices" not in fields:
            raise PoisonFileError("mode 'replace' needs indices: the training images the poisons take the place of")
        if sources["inside"] < n:
            raise PoisonFileError(
                f"mode 'replace': {n - sources['inside']} of {n} source images lie outside the training "
                f"set of {len(clean)} images the preset trains on (a subset of the split); evaluate "
                "on the full split: --train-size all (train_size: null)"
            )
    elif n > len(clean):
        raise PoisonFileError(
            f"{n} poisons for {len(clean)} training images: an appended poison may hold at most as many "
            "images as the training set (ε_d ≤ 1)"
        )
    target = _scalar(fields, "target_index", "int")
    adversarial = _scalar(fields, "adversarial_class", "int")
    if (target is None) != (adversarial is None):
        raise PoisonFileError("a targeted poison declares both target_index and adversarial_class; this file has one")
    if target is not None and not 0 <= target < (test_size or target + 1):
        raise PoisonFileError(f"target_index={target}; allowed: 0 to {test_size - 1}, a test image of the full split")
    if adversarial is not None and not 0 <= adversarial < clean.num_classes:
        raise PoisonFileError(f"adversarial_class={adversarial}; allowed: 0 to {clean.num_classes - 1}")
    trigger = _trigger(fields, tuple(clean.x.shape[1:]), clean.num_classes)
    made = {}
    if "provenance" in fields:
        try:
            made = json.loads(_scalar(fields, "provenance", "str"))
        except json.JSONDecodeError as e:
            raise PoisonFileError(f"provenance is not JSON text ({e})") from None
    provenance = {
        "attack": made.get("attack", "imported"),
        "mode": FILE_MODES[mode],
        "bounds": bounds,
        "read": {**read, "layout": layout, "pixels": pixels, "sources": sources},
        **({"made": made} if made else {}),
        **({"target_index": target, "adversarial_class": adversarial} if target is not None else {}),
    }
    if trigger is not None:
        provenance["trigger"] = trigger.describe()
    return PoisonSet(x, torch.from_numpy(y.astype(np.int64)), positions, n / len(clean), provenance, trigger)


def _trigger_array(fields: dict, name: str, chw: tuple[int, int, int], channels: tuple[int, ...]) -> torch.Tensor:
    """A pattern or mask as C×H×W float in [0, 1]: given as H×W, H×W×C or C×H×W, uint8 (0-255) or float (0-1)."""
    c, h, w = chw
    a = fields[name]
    if a.dtype != np.uint8 and a.dtype.kind != "f":
        raise PoisonFileError(f"{name} has dtype {a.dtype}; allowed: uint8 (0-255) or float (0-1)")
    shapes = {(h, w): lambda a: a[None], **{(h, w, k): lambda a: a.transpose(2, 0, 1) for k in channels}}
    shapes |= {(k, h, w): lambda a: a for k in channels}
    if a.shape not in shapes:
        allowed = ", ".join("×".join(map(str, s)) for s in shapes)
        raise PoisonFileError(f"{name} has shape {'×'.join(map(str, a.shape))}; allowed: {allowed} for these images")
    t = torch.from_numpy(np.ascontiguousarray(shapes[a.shape](a), dtype=np.float32))
    return t / 255 if a.dtype == np.uint8 else t


def _trigger(fields: dict, chw: tuple[int, int, int], num_classes: int) -> Trigger | None:
    """A backdoor's trigger from ``trigger``, ``trigger_mask`` or ``blend``, and ``target_class``; None if none."""
    given = [k for k in ("trigger", "trigger_mask", "blend", "target_class", "source_class") if k in fields]
    if not given:
        return None
    if "trigger" not in fields:
        raise PoisonFileError(
            f"{', '.join(given)} without a pattern; a backdoor's file holds trigger (the pattern), trigger_mask or "
            "blend, and target_class"
        )
    if ("trigger_mask" in fields) == ("blend" in fields):
        raise PoisonFileError(
            "a trigger needs exactly one of trigger_mask (m per pixel) and blend (a constant α); this file has "
            + ("both" if "blend" in fields else "neither")
        )
    target = _scalar(fields, "target_class", "int")
    if target is None:
        raise PoisonFileError("a trigger without target_class; allowed: the class a triggered image should be read as")
    pattern = _trigger_array(fields, "trigger", chw, (chw[0],))
    if "blend" in fields:
        alpha = fields["blend"]
        if alpha.shape != () or alpha.dtype.kind != "f":
            raise PoisonFileError(f"blend={alpha!r}; allowed: a single number in (0, 1]")
        alpha = float(alpha)
        mask = torch.full((1, *chw[1:]), alpha)
    else:
        alpha, mask = None, _trigger_array(fields, "trigger_mask", chw, (1, chw[0]))
    try:
        source = _scalar(fields, "source_class", "int")
        return check_trigger(Trigger(target, pattern, mask, alpha, source_class=source), chw, num_classes)
    except TriggerError as e:
        raise PoisonFileError(str(e)) from None
