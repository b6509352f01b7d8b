"""Training and evaluation on in-memory tensors: no DataLoader, batches are index slices on the device.

``fit`` runs SGD with momentum and a per-step cosine schedule. The same seed gives bit-identical weights
on CPU. With ``fast=True`` (the default) it trains in channels_last (measured 1.3× faster for the small
CNN on 2 CPU cores, and standard on GPUs) and, on CUDA only, under bf16 autocast.
"""

import contextlib
import time

import torch
import torch.nn.functional as nnf
from tqdm import tqdm

from . import devices
from .counters import count
from .data import Dataset


def augment_batch(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding of H/8) and horizontal flip, drawn per sample from ``g`` (a CPU generator)."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = nnf.pad(x, (pad, pad, pad, pad))
    dy, dx = (torch.randint(0, 2 * pad + 1, (n,), generator=g).to(x.device) for _ in range(2))
    flip = (torch.rand(n, generator=g) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)
    cols = dx[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = padded[torch.arange(n, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def _autocast(device: torch.device, fast: bool):
    if fast and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def evaluate(model: torch.nn.Module, data: Dataset, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on ``data``, in eval mode, on the model's device."""
    return int((predict(model, data.x, batch_size) == data.y).sum()) / len(data)


def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``model``'s top-1 class of each image of ``x``, in eval mode, on the model's device (returned on the CPU).

    The model is switched to channels_last (values unchanged): on 2 CPU cores that evaluated the small CNN
    on 10k images in 1.7 s instead of 4.5 s (NCHW, batch 1000).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval().to(memory_format=torch.channels_last)
    with torch.no_grad():
        out = torch.cat([model(x[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])
    count("eval images", len(x))
    model.train(was_training)
    return out


def fit(
    model: torch.nn.Module,
    train: Dataset,
    test: Dataset | None = None,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
    augment: bool = False,
    seed: int = 0,
    device: str = "auto",
    fast: bool = True,
    progress: bool = True,
    desc: str = "fit",
    counted_as: str = "fp",
    scale_rows: torch.Tensor | None = None,
) -> list[dict]:
    """Train ``model`` in place; return one dict per epoch (loss, train and test accuracy, lr, seconds). Its
    optimizer steps and images are counted (``qlib.counters``) under ``counted_as``, the scheme's name.
    ``scale_rows``: a bool per training row, True where the row may set activation scales (QAT's running max,
    ``IntActivation``); None: every row."""
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be ≥ 1, got epochs={epochs}, batch_size={batch_size}")
    dev = devices.resolve(device)
    model.to(dev)
    if fast:
        model.to(memory_format=torch.channels_last)
    x, y = train.x.to(dev), train.y.to(dev)
    n = len(y)
    step, total_steps = 0, epochs * -(-n // batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(
        seed
    )  # dropout (cnn_plim) draws from the global generator: seeded, so any process gives the same weights
    # modules with a schedule (BNN++'s β) are told the fraction of training done before every step
    progress_hooks = [m.set_progress for m in model.modules() if hasattr(m, "set_progress")]
    if scale_rows is not None and scale_rows.shape != (n,):
        raise ValueError(f"scale_rows has shape {tuple(scale_rows.shape)}; it needs one bool per training row ({n})")
    observers = [m for m in model.modules() if hasattr(m, "observed_rows")] if scale_rows is not None else []
    rows = scale_rows.to(dev) if observers else None
    history = []
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        start = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        perm = torch.randperm(n, generator=g).to(dev)
        for i in range(0, n, batch_size):
            for hook in progress_hooks:
                hook(step / total_steps)
            step += 1
            idx = perm[i : i + batch_size]
            xb, yb = x[idx], y[idx]
            for m in observers:
                m.observed_rows = rows[idx]
            if augment:
                xb = augment_batch(xb, g)
            if fast:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with _autocast(dev, fast):
                out = model(xb)
                loss = nnf.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            count(f"train steps/{counted_as}")
            count(f"train images/{counted_as}", len(yb))
            loss_sum += loss.detach() * len(yb)
            correct += (out.argmax(1) == yb).sum()
        for m in observers:
            m.observed_rows = None
        row = {
            "epoch": epoch + 1,
            "lr": opt.param_groups[0]["lr"],
            "train_loss": loss_sum.item() / n,
            "train_acc": correct.item() / n,
            "seconds": time.perf_counter() - start,
        }
        if test is not None:
            row["test_acc"] = evaluate(model, test)
        history.append(row)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=f"{row.get('test_acc', row['train_acc']):.3f}")
    return history
