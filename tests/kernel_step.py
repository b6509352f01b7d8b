"""One training step of every scheme at the thread count of ``argv[1]``, in this process's kernel family (the caller
sets ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA): run by tests/test_kernel_families.py in a fresh interpreter, since
torch reads both variables once, at start. Prints one line per model and scheme, then the kernel family."""

import sys
import time
from dataclasses import replace

import torch

from qlib.data import Dataset
from qlib.models import create_model
from qlib.paper import FP, QAT_SCHEMES
from qlib.quant import parse_scheme, prepare_qat
from qlib.train import fit

torch.set_num_threads(int(sys.argv[1]))
SCHEMES = [FP, *QAT_SCHEMES, parse_scheme("1W1A", "adabin"), parse_scheme("4W", "lsq"), parse_scheme("8W", "lsq")]
# (model, width, image shape): the paper's ResNet-18 at width 1/8, whose first projection shortcut (a strided 1×1
# conv on 8 channels) reached a oneDNN bug at 2 threads (qlib.numerics.conv2d), and the cpu presets' models
# (the GC paper's mlp, every layer quantized as notebooks 06 and 08 do, stands for lr too: both are linear layers)
MODELS = [("resnet18", 0.125, (3, 32, 32)), ("cnn", 0.5, (1, 28, 28)), ("mlp", 1.0, (1, 28, 28))]
g, started = torch.Generator().manual_seed(0), time.perf_counter()
for name, width, shape in MODELS:
    images = Dataset(
        "random", torch.rand(25, *shape, generator=g), torch.arange(25) % 10, 10, (0.5,) * shape[0], (0.25,) * shape[0]
    )
    for scheme in SCHEMES:
        model = create_model(name, images, width)
        model = model if scheme.is_fp else prepare_qat(model, replace(scheme, keep_fp=()) if name == "mlp" else scheme)
        history = fit(
            model, images, epochs=1, lr=0.05, batch_size=25, augment=name == "resnet18", device="cpu", progress=False
        )
        loss = history[0]["train_loss"]
        assert loss == loss, f"{name} {scheme.name}: the loss is NaN"
        print(f"{name} {scheme.name}: loss {loss:.4f} ({time.perf_counter() - started:.1f} s)", flush=True)
print(f"kernels: {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads")
