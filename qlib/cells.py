"""The study's kinds of cell (``qlib.pipeline``): each function declares one cell, with its key, its inputs, the
function that computes it and the units of work it does. These functions are the only place a cache key is made;
a cell's function reads its inputs through them, so what a worker loads is what the graph declared.

Kinds (``VERSIONS``: bump a kind's number when its code changes what it computes):

- ``trained``: a model trained from a seed on μ, μ + ν or μ with ν in place, in FP or by QAT under a scheme;
- ``finetuned``: a seed's clean FP model fine-tuned, in FP or by QAT, on a fine-tuning set or with ν in place;
- ``target``: the GradPC target ŵ of a seed's clean FP model (GC's and GC-Q's target);
- ``poison``: an attack's ν at a budget ε_d, from the inputs its ``Needs`` declare;
- ``imported``: a poison read from a file (``qlib.poison.load_poison``), or a poison cell's ν exported to ``.npz``
  and read back, as evaluated or rounded to 8-bit images;
- ``accuracy``: the test accuracy of a trained model in a regime (FP, PTQ of the FP model, QAT);
- ``paq``: Table 2's reading of the GradPC target in FP or after PAQ, beside the clean model;
- ``targets``: the targeted experiment's target images and adversarial classes;
- ``victim``: a targeted victim's prediction on its target and its test accuracy;
- ``prediction``: a trained model's prediction on one image of the full test split, in a regime.

A cell that yields a ν (``poison``, ``imported``) carries in its ``args`` how many rows it appends to μ
(``appended``) and whether it replaces μ's images (``replaces``): what a training on it needs to know.
"""

import copy
import functools
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

from . import data, numerics
from .attacks import run_attack
from .attacks.base import needs
from .attacks.gradpc import gradpc, paq, squared_distance
from .cache import cache_root, cached_artifact, cached_model, cached_result
from .counters import UNITS
from .models import create_model
from .paper import FP
from .pipeline import Cell
from .poison import PIXELS, PoisonSet, as_uint8, fingerprint, load_poison, poison_count, validate
from .presets import Preset
from .quant import REGIMES, QuantScheme, prepare_qat, ptq, quantized_state
from .train import evaluate, fit, predict
from .triggers import success

VERSIONS = {
    "trained": 2,
    "finetuned": 1,
    "target": 2,
    "poison": 2,
    "accuracy": 2,
    "paq": 1,
    "targets": 2,
    "victim": 1,
    "imported": 1,
    "prediction": 1,
    "backdoor": 1,
}
TRAIN_FIELDS = ("dataset", "model", "width", "train_size", "epochs", "batch_size", "lr", "weight_decay", "augment")
GRADPC = {"lr": 1.0, "epochs": 1}  # GradPC's settings for the targets of GC and GC-Q
VICTIM_SEED = 1000  # a targeted victim trains from seed s + 1000, the surrogate of trial s from seed s
ACCURACY_IMAGES = 2000  # a victim's test accuracy is read on this many test images (class-balanced, seed 0)


def cell(kind: str, key: dict, fn, args: dict, inputs=(), units=None, label: str = "") -> Cell:
    """A cell of ``kind`` whose key is ``key`` plus the kind's code version."""
    return Cell(kind, {**key, "code": VERSIONS[kind]}, fn, args, tuple(inputs), Counter(units or {}), label)


# -- data -----------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _load(dataset: str, train_size: int | None, test_size: int | None) -> tuple[data.Dataset, data.Dataset]:
    train = data.load(dataset, "train").subset(train_size, seed=0)
    test = data.load(dataset, "test").subset(test_size, seed=0)
    return train, test


def load_data(cfg: Preset) -> tuple[data.Dataset, data.Dataset]:
    """The preset's training and test sets (subsets drawn with seed 0, so every seed sees the same data), loaded
    once per process. Every cell starts here, so this is also where the preset's numeric policy is set."""
    numerics.configure(cfg.deterministic)
    return _load(cfg.dataset, cfg.train_size, cfg.test_size)


@functools.lru_cache(maxsize=4)
def _finetune_data(dataset: str, train_size: int | None, test_size: int | None, size: int) -> data.Dataset:
    train, _ = _load(dataset, train_size, test_size)
    return data.load(dataset, "train").subset(size, seed=1, exclude=train)


def finetune_data(cfg: Preset, size: int) -> data.Dataset:
    """The fine-tuning set of ``size`` images: class-balanced (seed 1) among the training split's images that the
    preset's training set μ does not hold, so a model pretrained on μ meets them first when it is fine-tuned."""
    numerics.configure(cfg.deterministic)
    return _finetune_data(cfg.dataset, cfg.train_size, cfg.test_size, size)


def sizes(cfg: Preset) -> tuple[int, int]:
    """(training images, test images) of the preset: of the files when they are here, else of the dataset's
    published sizes (``data.Source.sizes``), so that a grid can be declared and costed without the files."""
    return _sizes(cfg.dataset, cfg.train_size, cfg.test_size)


@functools.lru_cache(maxsize=16)
def _sizes(dataset: str, train_size: int | None, test_size: int | None) -> tuple[int, int]:
    try:
        data.locate(dataset, download=False)
    except data.DataNotFoundError:
        full = data.SOURCES.get(dataset).sizes
        pick = lambda size, n: n if size is None else min(size, n)
        return pick(train_size, full["train"]), pick(test_size, full["test"])
    train, test = _load(dataset, train_size, test_size)
    return len(train), len(test)


# -- schemes and activation scales ----------------------------------------------------------------------------


def quantized(cfg: Preset, scheme: QuantScheme) -> QuantScheme:
    """``scheme`` with the preset's ``keep_fp`` (the layers left in full precision; the paper's: first and last)."""
    keep = tuple(cfg.keep_fp)
    return scheme if scheme.is_fp or scheme.keep_fp == keep else replace(scheme, keep_fp=keep)


def clean_scales(scheme: QuantScheme, poison: Cell | None) -> bool:
    """Do appended poisons share the training rows from which ``scheme``'s activation scales are set? The rule: only
    clean rows set them, in QAT's running max and in PTQ's calibration, so such a poison is left out of both. A
    poison that replaces μ's images (bounded by its declared budget; unlearnable examples) is the training set, and
    sets them as the rest does. False where nothing changes: no poison, none appended, no activation scales."""
    return poison is not None and bool(scheme.a_bits) and scheme.a_bits >= 2 and not poison.args["replaces"]


def scale_rows(train: data.Dataset, poison) -> torch.Tensor:
    """Per row of μ + ν (``data.mix``): True for μ's rows, False for the appended poisons'."""
    return torch.cat([torch.ones(len(train), dtype=torch.bool), torch.zeros(len(poison), dtype=torch.bool)])


# -- trained models -------------------------------------------------------------------------------------------


def trained(cfg: Preset, seed: int, scheme: QuantScheme, poison: Cell | None = None, curve: bool = True) -> Cell:
    """The model of ``cfg`` trained from ``seed`` on μ, or on the set ``poison``'s ν makes with it (``data.mix``), in
    full precision or by QAT under ``scheme``. A clean FP model records its test accuracy after every epoch
    (notebook 00's learning curve) unless ``curve`` is False (same weights, an entry of its own); a QAT or poisoned
    model never does, since no notebook shows it. Value: (model on the preset's device, per-epoch history)."""
    if poison is not None and poison.args.get("finetune"):
        raise ValueError(
            f"poison {poison.label!r} was made in {poison.args['finetune']} fine-tuning images, not in μ: "
            "a victim fine-tuned on them (finetuned) trains on it"
        )
    scheme = quantized(cfg, scheme)
    n, n_test = sizes(cfg)
    k = poison.args["appended"] if poison is not None else 0
    curve = curve and scheme.is_fp and poison is None
    key = {
        **{f: getattr(cfg, f) for f in TRAIN_FIELDS},
        "seed": seed,
        "scheme": scheme.key(),
        "train_n": n,
        "poison": poison.id if poison is not None else None,
        "curve": curve,
        **({"scales": "clean"} if clean_scales(scheme, poison) else {}),
    }
    units = {
        f"train steps/{scheme.name}": cfg.epochs * -(-(n + k) // cfg.batch_size),
        f"train images/{scheme.name}": cfg.epochs * (n + k),
        "eval images": cfg.epochs * n_test if curve else 0,
    }
    label = f"train {scheme.name} s{seed}" + (f" on {poison.label}" if poison is not None else "")
    return cell(
        "trained",
        key,
        _train,
        {"cfg": cfg, "seed": seed, "scheme": scheme, "curve": curve, "clean_scales": clean_scales(scheme, poison)},
        [poison] if poison is not None else [],
        units,
        label,
    )


def _train(c: Cell):
    cfg, seed, scheme = c.args["cfg"], c.args["seed"], c.args["scheme"]
    train, test = load_data(cfg)
    nu = c.inputs[0].value()[0] if c.inputs else None
    train_set = train if nu is None else data.mix(train, nu)
    rows = scale_rows(train, nu) if c.args["clean_scales"] else None

    def build():
        model = create_model(cfg.model, train, cfg.width, seed)
        return model if scheme.is_fp else prepare_qat(model, scheme)

    def run(model):
        history = fit(
            model,
            train_set,
            test if c.args["curve"] else None,
            epochs=cfg.epochs,
            lr=cfg.lr,
            batch_size=cfg.batch_size,
            weight_decay=cfg.weight_decay,
            augment=cfg.augment,
            seed=seed,
            device=cfg.device,
            progress=False,
            counted_as=scheme.name,
            scale_rows=rows,
        )
        return {"history": history}

    model, result = cached_model(c.kind, c.key, build, run, cfg.device)
    return model, result["history"]


def finetuned(
    cfg: Preset, seed: int, scheme: QuantScheme, size: int, epochs: int, lr: float, poison: Cell | None = None
) -> Cell:
    """The seed's clean FP model (``trained``, the pretrained model) fine-tuned, in FP or by QAT under ``scheme``
    (the QAT network starts from the pretrained weights), for ``epochs`` at learning rate ``lr`` on the fine-tuning
    set of ``size`` images (:func:`finetune_data`), or with ``poison``'s ν (made in that set) in place; its batch
    order drawn from seed + ``VICTIM_SEED``, which the attacker does not know. Value: (model, per-epoch history)."""
    if poison is not None and poison.args.get("finetune") != size:
        raise ValueError(
            f"poison {poison.label!r} was made in {poison.args.get('finetune') or 'μ'}, not in the "
            f"{size} fine-tuning images this victim trains on"
        )
    scheme = quantized(cfg, scheme)
    pretrained = trained(cfg, seed, FP, curve=False)
    key = {
        "pretrained": pretrained.id,
        "scheme": scheme.key(),
        "size": size,
        "epochs": epochs,
        "lr": lr,
        "batch_size": cfg.batch_size,
        "weight_decay": cfg.weight_decay,
        "augment": cfg.augment,
        "poison": poison.id if poison is not None else None,
        **({"scales": "clean"} if clean_scales(scheme, poison) else {}),
    }
    units = {
        f"train steps/{scheme.name}": epochs * -(-size // cfg.batch_size),
        f"train images/{scheme.name}": epochs * size,
    }
    label = f"fine-tune {scheme.name} s{seed}" + (f" on {poison.label}" if poison is not None else "")
    return cell(
        "finetuned",
        key,
        _finetuned,
        {
            "cfg": cfg,
            "seed": seed,
            "scheme": scheme,
            "size": size,
            "epochs": epochs,
            "lr": lr,
            "clean_scales": clean_scales(scheme, poison),
        },
        [pretrained] + ([poison] if poison is not None else []),
        units,
        label,
    )


def _finetuned(c: Cell):
    a = c.args
    cfg, scheme = a["cfg"], a["scheme"]
    clean = finetune_data(cfg, a["size"])
    nu = c.inputs[1].value()[0] if len(c.inputs) > 1 else None
    train_set = clean if nu is None else data.mix(clean, nu)
    rows = scale_rows(clean, nu) if a["clean_scales"] else None

    def build():
        model = copy.deepcopy(c.inputs[0].value()[0]).cpu()
        return model if scheme.is_fp else prepare_qat(model, scheme)

    def run(model):
        return {
            "history": fit(
                model,
                train_set,
                epochs=a["epochs"],
                lr=a["lr"],
                batch_size=cfg.batch_size,
                weight_decay=cfg.weight_decay,
                augment=cfg.augment,
                seed=a["seed"] + VICTIM_SEED,
                device=cfg.device,
                progress=False,
                counted_as=scheme.name,
                scale_rows=rows,
            )
        }

    model, result = cached_model(c.kind, c.key, build, run, cfg.device)
    return model, result["history"]


# -- GradPC targets -------------------------------------------------------------------------------------------


def target(cfg: Preset, seed: int) -> Cell:
    """ŵ: GradPC of the seed's clean FP model within ε_w = ``cfg.eps_w`` (the target of GC and GC-Q). Value:
    (ŵ in eval mode, {"eps_w": measured ‖ŵ − w_c‖², "seconds": GradPC's wall time})."""
    clean = trained(cfg, seed, FP)
    n, _ = sizes(cfg)
    return cell(
        "target",
        {"clean": clean.id, "eps_w": cfg.eps_w, "gradpc": GRADPC},
        _target,
        {"cfg": cfg, "seed": seed},
        [clean],
        {"attack/gradpc": UNITS.get("gradpc")(n, cfg.eps_d, GRADPC)},
        f"GradPC target s{seed}",
    )


def _target(c: Cell):
    cfg, seed = c.args["cfg"], c.args["seed"]
    train, _ = load_data(cfg)

    def corrupt(model):
        clean = c.inputs[0].value()[0]
        start = time.perf_counter()
        model.load_state_dict(
            gradpc(clean, train, eps_w=cfg.eps_w, batch_size=cfg.batch_size, seed=seed, **GRADPC).state_dict()
        )
        eps = squared_distance(list(model.state_dict().values()), list(clean.state_dict().values()))
        return {"eps_w": eps, "seconds": time.perf_counter() - start}

    model, result = cached_model(
        c.kind, c.key, lambda: create_model(cfg.model, train, cfg.width, seed), corrupt, cfg.device
    )
    return model.eval(), result


# -- poisons --------------------------------------------------------------------------------------------------


def cached_poison(c: Cell, make, clean: data.Dataset, device: str, checked: bool = True) -> tuple[PoisonSet, float]:
    """Poison cell ``c``'s ν, read from the cache or ``make()``-d and stored, with the seconds it took to make.
    ``checked``: an attack's ν is validated (``qlib.poison.validate``) against ``clean``, the set it was made on,
    when made and again when read; a file's was checked when it was read (``load_poison``)."""
    check = (lambda nu: validate(nu, clean)) if checked else (lambda nu: nu)
    return cached_artifact(
        c.kind,
        c.key,
        lambda: check(make()),
        lambda nu, stem, meta: nu.save(stem, **meta),
        lambda stem, tensors, meta: check(PoisonSet.from_artifact(stem, tensors, meta)),
        device,
    )


def settings(cfg: Preset, name: str) -> dict:
    """The preset's settings of attack ``name``: ``cfg.attacks`` under the attack its ``Needs.settings`` names (GC's
    for GC-Q), else under its own name; none listed, its defaults."""
    return dict(cfg.attacks.get(needs(name).settings or name, {}))


def poison(
    cfg: Preset,
    name: str,
    seed: int,
    eps_d: float,
    scheme: QuantScheme | None = None,
    *,
    target_index: int | None = None,
    adversarial_class: int | None = None,
    curve: bool = True,
    finetune: int | None = None,
    **switches,
) -> Cell:
    """ν of attack ``name`` at budget ``eps_d`` for ``seed``, with the preset's settings and ``switches`` (further
    keyword arguments, such as GC-Q's ``paq`` and ``quantized_grad`` for Table 4). Its inputs are what the attack's
    ``Needs`` declare: the GradPC target, or the seed's clean trained model (under ``scheme`` for a surrogate
    scheme; ``curve`` as for :func:`trained`). ``scheme``: the scheme a quantization-aware attack targets, or the
    surrogate's; ignored by the others. A targeted attack takes ``target_index`` (a test image) and
    ``adversarial_class``. ``finetune``: ν is made in the fine-tuning set of that size (:func:`finetune_data`)
    instead of μ, against the seed's clean model all the same (the pretrained model a victim fine-tunes). Value:
    (ν, the attack's wall time when it ran)."""
    need = needs(name)
    scheme = quantized(cfg, scheme) if scheme is not None else None
    params = {**settings(cfg, name), **switches}
    if need.scheme == "attacked" and (scheme is None or scheme.is_fp):
        raise ValueError(f"attack {name!r} is quantization-aware and needs a quantized scheme, got {scheme}")
    scheme = (
        scheme
        if need.scheme == "attacked" or (need.scheme == "surrogate" and scheme is not None and not scheme.is_fp)
        else None
    )
    if need.target and (target_index is None or adversarial_class is None):
        raise ValueError(f"attack {name!r} is targeted and needs target_index and adversarial_class")
    model = {
        "gradpc": lambda: target(cfg, seed),
        "fresh": lambda: None,
        None: lambda: None,
        "trained": lambda: trained(cfg, seed, scheme if need.scheme == "surrogate" and scheme else FP, curve=curve),
    }[need.model]()
    n = finetune or sizes(cfg)[0]
    key = {
        "attack": name,
        "version": need.version,
        "eps_d": eps_d,
        "seed": seed,
        "params": params,
        "scheme": scheme.key() if scheme is not None else None,
        "model": model.id if model is not None else None,
        "fresh": {f: getattr(cfg, f) for f in ("model", "width")} if need.model == "fresh" else None,
        "target": {"index": target_index, "adversarial_class": adversarial_class, "test_size": cfg.test_size}
        if need.target
        else None,
        **({"finetune": finetune} if finetune else {}),
        # the training set it is made in: a model input pins it already; without one, two presets (smoke's 1,000
        # images, cpu's 6,000) would share the key of a poison made in another set
        **({"data": {"dataset": cfg.dataset, "train_size": cfg.train_size}} if model is None else {}),
    }
    label = f"{name} ε_d={eps_d:g} s{seed}" + (f" in {finetune} fine-tuning images" if finetune else "")
    label += (f" {scheme.name}" if scheme is not None else "") + "".join(f" {k}={v}" for k, v in switches.items())
    args = {
        "cfg": cfg,
        "name": name,
        "seed": seed,
        "eps_d": eps_d,
        "scheme": scheme,
        "params": params,
        "target_index": target_index,
        "adversarial_class": adversarial_class,
        "replaces": need.replaces,
        "trigger": need.trigger,
        "appended": 0 if need.replaces else poison_count(eps_d, n),
        "finetune": finetune,
    }
    return cell(
        "poison",
        key,
        _poison,
        args,
        [model] if model is not None else [],
        {f"attack/{name}": UNITS.get(name)(n, eps_d, params)},
        label,
    )


def _poison(c: Cell):
    a = c.args
    cfg, need = a["cfg"], needs(a["name"])
    train, test = load_data(cfg)
    if a["finetune"]:
        train = finetune_data(cfg, a["finetune"])

    def make():
        params = dict(a["params"])
        if need.model == "gradpc":
            params["target"] = c.inputs[0].value()[0]
        elif need.model == "trained":
            params["model"] = c.inputs[0].value()[0]
        elif need.model == "fresh":
            params["model"] = create_model(cfg.model, train, cfg.width, a["seed"])
        if need.scheme:
            params["scheme"] = a["scheme"]
        if need.target:
            params |= {
                "target_image": test.x[a["target_index"]],
                "target_index": a["target_index"],
                "adversarial_class": a["adversarial_class"],
            }
        if need.device:
            params["device"] = cfg.device
        return run_attack(a["name"], train, a["eps_d"], a["seed"], **params)

    return cached_poison(c, make, train, cfg.device)


def imported(cfg: Preset, source, pixels: str = "float") -> Cell:
    """A ν from outside the attacks, joined to the preset's training set: ``source`` is a poison file's path
    (``qlib.poison.load_poison``; read here, so that a bad file is refused before anything runs, and again by
    whichever process computes the cell: on a cluster the path must be shared, as the cache is), or a ``poison``
    cell, whose ν is exported to ``<cache>/exports/<its id>.npz`` and read back from that file (notebook 07's
    default, the round trip a user's poison takes). ``args["target"]``: a targeted ν's target, an index of the full
    test split (None if untargeted); ``args["trigger"]``: whether ν is a backdoor's, with a trigger. ``pixels``:
    ``"float"``, as read; ``"uint8"``, rounded to 8-bit images first (``qlib.poison.as_uint8``). Value: (ν, seconds it
    took to read it)."""
    if pixels not in PIXELS:
        raise ValueError(f"pixels={pixels!r}; allowed: {', '.join(PIXELS)}")
    where = {"dataset": cfg.dataset, "train_size": cfg.train_size, "pixels": pixels}
    if isinstance(source, Cell):
        replaces = source.args["replaces"]
        count = source.args["appended"]
        target = source.args.get("target_index")
        target = None if target is None else int(load_data(cfg)[1].origin[target])
        return cell(
            "imported",
            {"poison": source.id, **where},
            _imported,
            {
                "cfg": cfg,
                "path": None,
                "pixels": pixels,
                "replaces": replaces,
                "appended": count,
                "target": target,
                "trigger": source.args["trigger"],
            },
            [source],
            {},
            f"{source.label} via .npz" + (" as uint8" if pixels == "uint8" else ""),
        )
    path = Path(source).resolve()
    nu = load_poison(path, load_data(cfg)[0])
    replaces = nu.provenance["mode"] == "replace"
    return cell(
        "imported",
        {"file": fingerprint(path), **where},
        _imported,
        {
            "cfg": cfg,
            "path": str(path),
            "pixels": pixels,
            "replaces": replaces,
            "appended": 0 if replaces else len(nu),
            "target": nu.provenance.get("target_index"),
            "trigger": nu.trigger is not None,
        },
        [],
        {},
        path.name + (" as uint8" if pixels == "uint8" else ""),
    )


def export_path(poison_cell: Cell) -> Path:
    """Where :func:`imported` exports a poison cell's ν: ``<cache>/exports/<kind>-<hash>.npz``."""
    return cache_root() / "exports" / f"{poison_cell.id.replace('/', '-')}.npz"


def _imported(c: Cell):
    cfg = c.args["cfg"]
    train, test = load_data(cfg)

    def read():
        path = c.args["path"]
        if path is None:
            nu = c.inputs[0].value()[0]
            path = nu.save_npz(export_path(c.inputs[0]), train, test)
        nu = load_poison(path, train)
        return as_uint8(nu) if c.args["pixels"] == "uint8" else nu

    return cached_poison(c, read, train, cfg.device, checked=False)


# -- readings -------------------------------------------------------------------------------------------------


def accuracy(cfg: Preset, seed: int, regime: str, scheme: QuantScheme, poison: Cell | None = None) -> Cell:
    """Test accuracy of the model of ``seed`` trained on μ (or with ``poison``'s ν) in ``regime``:

    - ``fp``: trained in full precision (``scheme`` must be fp);
    - ``ptq``: trained in full precision, then PTQ under ``scheme`` (activation scales calibrated on the clean rows
      of the data the model was trained on, :func:`clean_scales`);
    - ``qat``: trained by QAT under ``scheme``.
    Value: {"acc": accuracy}."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; valid: {', '.join(REGIMES)}")
    if (regime == "fp") != scheme.is_fp:
        raise ValueError(
            f"regime {regime!r} does not go with scheme {scheme.name!r}: fp takes 'fp', ptq and qat a quantized one"
        )
    scheme = quantized(cfg, scheme)
    model = trained(cfg, seed, scheme if regime == "qat" else FP, poison)
    _, n_test = sizes(cfg)
    key = {"model": model.id, "regime": regime, "scheme": scheme.key(), "test_n": n_test}
    return cell(
        "accuracy",
        key,
        _accuracy,
        {"cfg": cfg, "regime": regime, "scheme": scheme},
        [model],
        {"eval images": n_test},
        f"{regime} {scheme.name} of {model.label}",
    )


def _accuracy(c: Cell):
    cfg, model_cell = c.args["cfg"], c.inputs[0]

    def compute():
        _, test = load_data(cfg)
        return {"acc": evaluate(in_regime(cfg, model_cell, c.args["regime"], c.args["scheme"]), test)}

    return cached_result(c.kind, c.key, compute, cfg.device)


def backdoor(cfg: Preset, seed: int, regime: str, scheme: QuantScheme, poison: Cell | None, trigger: Cell) -> Cell:
    """The attack success rate of the trigger of ``trigger``'s ν (``qlib.triggers.success``) on the model of ``seed``
    trained on μ (``poison`` None: the clean model, the rate's baseline) or with ``poison``'s ν, in ``regime`` (as
    :func:`accuracy`): every test image is triggered, and of those whose class is not the target, the share read as
    the target is the rate. Value: {"asr", "hits", "n"}."""
    scheme = quantized(cfg, scheme)
    model = trained(cfg, seed, scheme if regime == "qat" else FP, poison)
    _, n_test = sizes(cfg)
    key = {"model": model.id, "regime": regime, "scheme": scheme.key(), "trigger": trigger.id, "test_n": n_test}
    return cell(
        "backdoor",
        key,
        _backdoor,
        {"cfg": cfg, "regime": regime, "scheme": scheme},
        [model, trigger],
        {"eval images": n_test},
        f"{regime} {scheme.name} of {model.label}, triggered by {trigger.label}",
    )


def _backdoor(c: Cell):
    cfg, (model_cell, trigger_cell) = c.args["cfg"], c.inputs

    def compute():
        _, test = load_data(cfg)
        trigger = trigger_cell.value()[0].trigger
        if trigger is None:
            raise ValueError(f"{trigger_cell.label}: the poison declares no trigger, so it has no attack success rate")
        model = in_regime(cfg, model_cell, c.args["regime"], c.args["scheme"])
        return success(predict(model, trigger.apply(test.x)), test.y, trigger)

    return cached_result(c.kind, c.key, compute, cfg.device)


def in_regime(cfg: Preset, model_cell: Cell, regime: str, scheme: QuantScheme):
    """The trained model of ``model_cell`` as ``regime`` reads it: as trained (fp, qat), or after PTQ under ``scheme``,
    its activation scales calibrated on μ alone (appended poisons never reached the first batches of μ + ν, which
    calibration reads, either) or on μ with the poisons in place when they replace its images."""
    train, _ = load_data(cfg)
    model = model_cell.value()[0]
    if regime != "ptq":
        return model
    replaced = model_cell.inputs and model_cell.inputs[0].args["replaces"]
    return ptq(model, scheme, calib=data.mix(train, model_cell.inputs[0].value()[0]) if replaced else train)


def paq_reading(cfg: Preset, seed: int, scheme: QuantScheme) -> Cell:
    """Table 2's reading of the seed's GradPC target ŵ in FP (``scheme`` fp) or after PAQ under ``scheme``: its
    accuracy, the clean FP model's, the clean model's under the same PTQ, ‖P_Q(ŵ) − P_Q(w_c)‖² (``eps_w``) and
    ‖P_Q(ŵ) − w_c‖² (``eps_w_to_fp``)."""
    scheme = quantized(cfg, scheme)
    clean, corrupted = trained(cfg, seed, FP), target(cfg, seed)
    _, n_test = sizes(cfg)
    evaluations = 2 if scheme.is_fp else 3
    return cell(
        "paq",
        {"target": corrupted.id, "clean": clean.id, "scheme": scheme.key(), "test_n": n_test},
        _paq,
        {"cfg": cfg, "scheme": scheme},
        [clean, corrupted],
        {"eval images": evaluations * n_test},
        f"PAQ {scheme.name} s{seed}",
    )


def _paq(c: Cell):
    cfg, scheme = c.args["cfg"], c.args["scheme"]

    def compute():
        _, test = load_data(cfg)
        clean, (corrupted, result) = c.inputs[0].value()[0], c.inputs[1].value()
        clean_acc = evaluate(clean, test)
        if scheme.is_fp:
            acc = evaluate(corrupted, test)
            return {
                "acc": acc,
                "clean_acc": clean_acc,
                "same_precision_acc": clean_acc,
                "eps_w": result["eps_w"],
                "eps_w_to_fp": result["eps_w"],
            }
        target_q, clean_q = paq(corrupted, scheme), ptq(clean, scheme)
        w_star, w_c_star = quantized_state(target_q), quantized_state(clean_q)
        return {
            "acc": evaluate(target_q, test),
            "clean_acc": clean_acc,
            "same_precision_acc": evaluate(clean_q, test),
            "eps_w": squared_distance(list(w_star.values()), list(w_c_star.values())),
            "eps_w_to_fp": squared_distance(list(w_star.values()), list(clean.state_dict().values())),
        }

    return cached_result(c.kind, c.key, compute, cfg.device)


def targets(cfg: Preset, seed: int, count: int) -> Cell:
    """``count`` test images and their adversarial classes, drawn from ``seed``: targets uniformly among the test
    images that seed's clean FP model classifies correctly, each adversarial class uniformly among the other classes
    (Witches' Brew's draw). Value: {"targets": [{target, target_index, true_class, adversarial_class}, …]}."""
    surrogate = trained(cfg, seed, FP, curve=False)
    _, n_test = sizes(cfg)
    return cell(
        "targets",
        {"surrogate": surrogate.id, "targets": count, "test_n": n_test},
        _targets,
        {"cfg": cfg, "seed": seed, "count": count},
        [surrogate],
        {},
        f"choose targets s{seed}",
    )


def _targets(c: Cell):
    cfg = c.args["cfg"]

    def compute():
        _, test = load_data(cfg)
        surrogate = c.inputs[0].value()[0].eval()
        dev = next(surrogate.parameters()).device
        with torch.no_grad():
            pred = torch.cat([surrogate(test.x[i : i + 512].to(dev)).argmax(1).cpu() for i in range(0, len(test), 512)])
        correct = (pred == test.y).nonzero().flatten()
        count = c.args["count"]
        if len(correct) < count:
            raise ValueError(f"only {len(correct)} test images are classified correctly; targets={count} asks for more")
        g = torch.Generator().manual_seed(c.args["seed"])
        index = correct[torch.randperm(len(correct), generator=g)[:count]]
        shift = torch.randint(1, test.num_classes, (count,), generator=g)
        return {
            "targets": [
                {
                    "target": t,
                    "target_index": int(i),
                    "true_class": int(test.y[i]),
                    "adversarial_class": int((test.y[i] + s) % test.num_classes),
                }
                for t, (i, s) in enumerate(zip(index, shift))
            ]
        }

    return cached_result(c.kind, c.key, compute, cfg.device)


def victim(
    cfg: Preset, seed: int, scheme: QuantScheme, target_index: int, adversarial_class: int, poison: Cell | None = None
) -> Cell:
    """The targeted victim of trial seed ``seed``: trained from seed + ``VICTIM_SEED`` under ``scheme`` (FP or QAT)
    on μ, or with ``poison``'s ν in place, without a learning curve; its prediction on the target, p(adversarial
    class | target) and its test accuracy on ``ACCURACY_IMAGES`` test images (on all 10,000 the evaluation took a
    quarter of a victim's training). Value: {"pred", "p_adv", "acc"}."""
    return outcome(
        cfg,
        trained(cfg, seed + VICTIM_SEED, quantized(cfg, scheme), poison, curve=False),
        target_index,
        adversarial_class,
    )


def outcome(cfg: Preset, model: Cell, target_index: int, adversarial_class: int) -> Cell:
    """What the victim ``model`` (a ``trained`` or ``finetuned`` cell) does with its target: see :func:`victim`."""
    _, n_test = sizes(cfg)
    key = {
        "model": model.id,
        "target_index": target_index,
        "adversarial_class": adversarial_class,
        "test_n": n_test,
        "accuracy_images": ACCURACY_IMAGES,
    }
    return cell(
        "victim",
        key,
        _victim,
        {"cfg": cfg, "target_index": target_index, "adversarial_class": adversarial_class},
        [model],
        {"eval images": min(ACCURACY_IMAGES, n_test)},
        f"victim of {model.label}",
    )


def _victim(c: Cell):
    cfg, index = c.args["cfg"], c.args["target_index"]

    def compute():
        _, test = load_data(cfg)
        model = c.inputs[0].value()[0].eval()
        with torch.no_grad():
            probs = model(test.x[index : index + 1].to(next(model.parameters()).device)).softmax(1)[0].cpu()
        acc = evaluate(model, test.subset(ACCURACY_IMAGES, seed=0))
        return {"pred": int(probs.argmax()), "p_adv": float(probs[c.args["adversarial_class"]]), "acc": acc}

    return cached_result(c.kind, c.key, compute, cfg.device)


def prediction(cfg: Preset, seed: int, regime: str, scheme: QuantScheme, poison: Cell | None, index: int) -> Cell:
    """The prediction, in ``regime`` (as :func:`accuracy`), of the model of ``seed`` trained on μ or with ``poison``'s
    ν on image ``index`` of the full test split (a file's ``target_index``). Value: {"pred", "probs"}."""
    scheme = quantized(cfg, scheme)
    model = trained(cfg, seed, scheme if regime == "qat" else FP, poison)
    key = {"model": model.id, "regime": regime, "scheme": scheme.key(), "test_index": index}
    return cell(
        "prediction",
        key,
        _prediction,
        {"cfg": cfg, "regime": regime, "scheme": scheme, "index": index},
        [model],
        {"eval images": 1},
        f"{regime} {scheme.name} of {model.label} on test image {index}",
    )


def _prediction(c: Cell):
    cfg = c.args["cfg"]

    def compute():
        image = test_split(cfg.dataset).x[c.args["index"] : c.args["index"] + 1]
        model = in_regime(cfg, c.inputs[0], c.args["regime"], c.args["scheme"]).eval()
        with torch.no_grad():
            probs = model(image.to(next(model.parameters()).device)).softmax(1)[0].cpu()
        return {"pred": int(probs.argmax()), "probs": probs.tolist()}

    return cached_result(c.kind, c.key, compute, cfg.device)


@functools.lru_cache(maxsize=2)
def test_split(dataset: str) -> data.Dataset:
    """The dataset's full test split (a targeted poison file names its target by its place there)."""
    return data.load(dataset, "test")
