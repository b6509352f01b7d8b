"""DC: DeepConfuse (Feng et al. 2019, "Learning to Confuse: Generating Training Time Adversarial Data with
Auto-Encoder"), a row of Table 5 (Section 4.3).

A U-Net g_ξ with a tanh output maps each training image to its perturbation; the poison is

    x̃ = clamp(x + ε·g_ξ(x), 0, 1),   ε = 0.032,  so ‖x̃ − x‖∞ ≤ ε.

g_ξ is trained against the training trajectory of a classifier f_θ. Each trial restarts f_θ from a fresh
initialisation and runs ``steps`` mini-batch steps; each step, on the same batch (x, y),
(b) updates ξ by Adam to *maximise* the clean loss after a differentiable pseudo-update of the classifier,

    θ' = θ − η ∇_θ CE(f_θ(x + ε·g_ξ(x)), y),      ξ ← ξ + Adam(∇_ξ CE(f_θ'(x), y)),

(a) then takes a real SGD step θ ← θ − η ∇_θ CE(f_θ(x + ε·g_ξ̄(x)), y) with a frozen copy g_ξ̄ of the
generator, which is refreshed (ξ̄ ← ξ) only at the end of each trial. This is how the official code decouples
the two updates, which the paper motivates by the target networks of Q-learning ("atkmodel" drives the
classifier, "tgtmodel" learns): within a trial the classifier follows one fixed poison, so ξ learns to confuse
whole trajectories rather than chase its own last update. This follows the official CIFAR-10 script
(kingfengji/DeepConfuse, CIFAR/train.py), whose defaults are ours: ε = 0.032, Adam lr 1e-4 for g, plain SGD
(no momentum) with η = 0.01 for f, batch 256, 20 classifier epochs per trial (20·⌈50000/256⌉ = 3920 steps),
1000 trials ("about 5-7 days on a single GPU"), and a U-Net of width 64 (64-128-256-512 channels, average-pool
down, bilinear up with skip connections, 1×1 conv + BatchNorm + tanh out). The poison is made by the final
generator in evaluation mode, as the official generation script does.

Implementation notes and deviations:
- The pseudo-update is a functional call (``torch.func.functional_call``, ``create_graph=True``) in train mode,
  as in the official code (BatchNorm uses batch statistics), but with *copies* of the classifier's buffers,
  so it does not move the classifier's running statistics (the official code lets it update them).
- The classifier is the caller's model (the official one is a VGG-11): the first trial starts from a deep
  copy of ``model`` as given, later trials from a copy whose layers are re-initialised (``reset_parameters``)
  from the attack's seed.
- The U-Net keeps the original three down-sampling levels; each up-sampling goes back to its skip
  connection's size, so odd sizes work (28 → 14 → 7 → 3 → 7 → 14 → 28 on Fashion-MNIST).
- The official script tests every trial's generator by training a scratch classifier on its poison and keeps
  the one with the lowest clean test accuracy; this needs a test set, so we keep the last generator.
- The scaled-down ``cpu`` preset passes fewer trials and steps, a narrower U-Net and a larger generator lr.

Work unit (``qlib.counters``, ``dc_units``): the images of the steps that train g, each image counted once per step
(its generator update through the pseudo-update and its classifier update); making the poisons with the final g
(forward only) is not counted.
"""

import copy

import torch
import torch.nn.functional as nnf
from torch import nn
from torch.func import functional_call

from ... import devices
from ...counters import UNITS, settings
from ...data import Dataset
from ...poison import PoisonSet
from ..base import ATTACKS, Needs
from .common import batch_rows, chosen, make_poison, minibatches, tally

LEVELS = 3  # the original U-Net's down-sampling levels
CL = torch.channels_last  # same values; measured 15% faster for DC's step (small CNN, 1 CPU core), standard on GPUs


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """g_ξ: a U-Net with ``levels`` average-pool halvings and widths ``width``·2^i; output tanh in [−1, 1]."""

    def __init__(self, channels: int, width: int, levels: int = LEVELS):
        super().__init__()
        widths = [width * 2**i for i in range(levels + 1)]
        self.down = nn.ModuleList(double_conv(cin, cout) for cin, cout in zip([channels] + widths, widths))
        self.up = nn.ModuleList(double_conv(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(levels)))
        self.out = nn.Sequential(nn.Conv2d(width, channels, 1), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down[:-1]:
            x = block(x)
            skips.append(x)
            x = nnf.avg_pool2d(x, 2)
        x = self.down[-1](x)
        for block, skip in zip(self.up, reversed(skips)):
            x = nnf.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
            x = block(torch.cat([x, skip], 1))
        return torch.tanh(self.out(x))


def make_generator(channels: int, width: int, seed: int, dev: torch.device) -> UNet:
    """The untrained g_ξ, initialised from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet(channels, width).to(dev, memory_format=CL)


def poisoned(ae: nn.Module, x: torch.Tensor, eps: float) -> torch.Tensor:
    """x̃ = clamp(x + ε·g(x), 0, 1)."""
    return (x + eps * ae(x)).clamp(0, 1)


def confusion_loss(
    classifier: nn.Module, ae: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, lr: float
) -> torch.Tensor:
    """CE(f_θ'(x), y) on the clean batch after the differentiable pseudo-update θ' = θ − lr·∇_θ CE(f_θ(x̃), y):
    what g maximises. Runs the classifier as it is (train mode: batch statistics) on copies of its buffers."""
    params = {k: p.detach().requires_grad_(True) for k, p in classifier.named_parameters()}
    buffers = {k: b.clone() for k, b in classifier.named_buffers()}
    loss = nnf.cross_entropy(functional_call(classifier, (params, buffers), (poisoned(ae, x, eps),)), y)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    updated = {k: p - lr * g for (k, p), g in zip(params.items(), grads)}
    return nnf.cross_entropy(functional_call(classifier, (updated, buffers), (x,)), y)


def fresh_classifier(model: nn.Module, trial: int, g: torch.Generator, dev: torch.device) -> nn.Module:
    """Trial 0: a copy of ``model``; later trials: a copy with every layer re-initialised from ``g`` (on CPU)."""
    net = copy.deepcopy(model).cpu()
    if trial:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=g)))
            for m in net.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
    return net.to(dev, memory_format=CL).train()


def batch_stream(n: int, batch_size: int, g: torch.Generator):
    """Mini-batch indices, epoch after epoch, each in a fresh random order; an epoch's last, incomplete batch
    is dropped (a batch of one would break BatchNorm in train mode)."""
    size = batch_rows(n, batch_size)
    while True:
        yield from (b for b in minibatches(n, batch_size, g) if len(b) == size)


def train_generator(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    seed: int,
    *,
    eps: float,
    trials: int,
    steps: int,
    ae_lr: float,
    lr: float,
    batch_size: int,
    ae_width: int,
    dev: torch.device,
) -> tuple[nn.Module, list[float]]:
    """The trained generator (evaluation mode) and each trial's mean confusion loss. Each step counts its
    images as DC's work."""
    g = torch.Generator().manual_seed(seed)
    ae = make_generator(x.shape[1], ae_width, seed, dev)
    frozen = copy.deepcopy(ae).eval()
    ae_opt = torch.optim.Adam(ae.parameters(), lr=ae_lr)
    stream = batch_stream(len(x), batch_size, g)
    history = []
    for trial in range(trials):
        classifier = fresh_classifier(model, trial, g, dev)
        cls_opt = torch.optim.SGD(classifier.parameters(), lr=lr)
        ae.train()
        total = 0.0
        for _ in range(steps):
            idx = next(stream).to(dev)
            xb, yb = x[idx].contiguous(memory_format=CL), y[idx]
            confusion = confusion_loss(classifier, ae, xb, yb, eps, lr)  # (b): ξ ascends it
            ae_opt.zero_grad(set_to_none=True)
            (-confusion).backward()
            ae_opt.step()
            total += confusion.item()
            with torch.no_grad():
                xt = poisoned(frozen, xb, eps)
            loss = nnf.cross_entropy(classifier(xt), yb)  # (a): the classifier trains on the frozen poison
            cls_opt.zero_grad(set_to_none=True)
            loss.backward()
            cls_opt.step()
            tally("dc", len(idx))
        frozen.load_state_dict(ae.state_dict())
        history.append(total / steps)
    return frozen, history


@torch.no_grad()
def perturb(ae: nn.Module, x: torch.Tensor, eps: float, batch_size: int) -> torch.Tensor:
    """The poisons clamp(x + ε·g(x), 0, 1), in batches."""
    batches = (x[i : i + batch_size].contiguous(memory_format=CL) for i in range(0, len(x), batch_size))
    return torch.cat([poisoned(ae, xb, eps) for xb in batches]).contiguous()


@ATTACKS.register("dc", Needs(model="fresh", replaces=True))
def dc(
    clean: Dataset,
    eps_d: float,
    seed: int,
    *,
    model: nn.Module,
    eps: float = 0.032,
    trials: int = 1000,
    steps: int = 3920,
    ae_lr: float = 1e-4,
    lr: float = 0.01,
    batch_size: int = 256,
    ae_width: int = 64,
    device: str = "cpu",
) -> PoisonSet:
    """DeepConfuse poisons: a U-Net trained against ``trials`` fresh trainings of ``model`` (a freshly
    initialised classifier), ``steps`` steps each; perturbation ε·g(x), L∞ radius ``eps``."""
    if not eps > 0 or trials < 1 or steps < 1 or not ae_lr > 0 or not lr > 0 or batch_size < 2 or ae_width < 1:
        raise ValueError(
            f"bad DC arguments: eps={eps}, trials={trials}, steps={steps}, ae_lr={ae_lr}, lr={lr}, "
            f"batch_size={batch_size} (≥ 2 for BatchNorm), ae_width={ae_width}"
        )
    if len(clean) < 2:
        raise ValueError("DC trains its classifier with BatchNorm on batches: it needs at least 2 training images")
    dev = devices.resolve(device)
    params = {
        "eps": eps,
        "trials": trials,
        "steps": steps,
        "ae_lr": ae_lr,
        "lr": lr,
        "batch_size": batch_size,
        "ae_width": ae_width,
    }
    # g learns on the whole clean set, as in the original; only the chosen images are replaced
    ae, history = train_generator(model, clean.x.to(dev), clean.y.to(dev), seed, **params, dev=dev)
    idx = chosen(clean, eps_d, seed)
    x_poison = perturb(ae, clean.x[idx].to(dev), eps, batch_size)
    return make_poison(clean, idx, x_poison, eps_d, seed, "dc", params, "linf", eps, confusion_loss=history)


@UNITS.register("dc")
def dc_units(n: int, eps_d: float, params: dict) -> int:
    """DC's unit: images in the steps that train g (each one generator update and one classifier update):
    ``trials`` × ``steps`` mini-batches of the whole clean set, whatever ε_d."""
    s = settings(dc, params)
    return s["trials"] * s["steps"] * batch_rows(n, s["batch_size"])
