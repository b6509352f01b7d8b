"""Models, looked up by name. Every conv and linear layer is a plain ``nn.Conv2d``/``nn.Linear`` so that
quantization can swap each for a quantized twin; input normalisation is the first layer, so the
model consumes pixel-space images in [0, 1]."""

import torch
from torch import nn

from . import numerics
from .registry import Registry

MODELS = Registry("model")


class Normalize(nn.Module):
    """(x − mean) / std per channel, with the constants stored as buffers."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class GlobalAvgPool(nn.Module):
    """The mean over each channel's positions, (N, C, H, W) → (N, C): ``AdaptiveAvgPool2d(1)`` and ``Flatten``
    in one, with a deterministic CUDA backward (``qlib.numerics``)."""

    def forward(self, x):
        return x.mean((2, 3))


class Projection(nn.Sequential):
    """A residual block's projection shortcut: a 1×1 conv at the block's stride, then BatchNorm. An ``nn.Sequential``
    (same modules, same state-dict keys) whose plain conv runs through ``numerics.conv2d``: a route-around of a oneDNN
    bug on the CPU, same values (a quantized twin does the same in its own forward)."""

    def forward(self, x):
        conv, bn = self
        return bn(numerics.conv2d(conv, x, conv.weight, conv.bias) if type(conv) is nn.Conv2d else conv(x))


def conv_bn(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, stride), nn.ReLU(inplace=True), conv_bn(cout, cout))
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = Projection(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act = nn.ReLU(inplace=True)  # a module, so 1-bit quantization can swap it for the binary activation

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


@MODELS.register("resnet18")
def resnet18(num_classes, in_channels, image_size, mean, std, width=1.0):
    """CIFAR-style ResNet-18 (He et al. 2016): 3×3 stem, no max-pool, stages of 64·width … 512·width channels."""
    widths = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
    layers = [Normalize(mean, std), conv_bn(in_channels, widths[0]), nn.ReLU(inplace=True)]
    cin = widths[0]
    for i, cout in enumerate(widths):
        stride = 1 if i == 0 else 2
        layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [GlobalAvgPool(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


@MODELS.register("cnn")
def cnn(num_classes, in_channels, image_size, mean, std, width=1.0):
    """Small CNN (made for 28×28 inputs): conv32 → pool → conv64 → pool → fc128 → classifier (BatchNorm after each
    conv)."""
    c1, c2, h = (max(1, round(c * width)) for c in (32, 64, 128))
    return nn.Sequential(
        Normalize(mean, std),
        nn.Conv2d(in_channels, c1, 3, padding=1, bias=False),
        nn.BatchNorm2d(c1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1, bias=False),
        nn.BatchNorm2d(c2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * (image_size // 4) ** 2, h),
        nn.ReLU(inplace=True),
        nn.Linear(h, num_classes),
    )


@MODELS.register("lr")
def lr(num_classes, in_channels, image_size, mean, std, width=1.0):
    """Logistic regression (the GC paper's LR): one linear layer on the flattened image. ``width`` has nothing to
    scale. With no hidden activation, only weight-only schemes quantize it."""
    return nn.Sequential(Normalize(mean, std), nn.Flatten(), nn.Linear(in_channels * image_size**2, num_classes))


@MODELS.register("mlp")
def mlp(num_classes, in_channels, image_size, mean, std, width=1.0):
    """The GC paper's NN: 784-128-10 with a ReLU (128·width hidden units); a WA scheme quantizes its hidden
    activation."""
    h = max(1, round(128 * width))
    return nn.Sequential(
        Normalize(mean, std),
        nn.Flatten(),
        nn.Linear(in_channels * image_size**2, h),
        nn.ReLU(inplace=True),
        nn.Linear(h, num_classes),
    )


@MODELS.register("cnn_plim")
def cnn_plim(num_classes, in_channels, image_size, mean, std, width=1.0):
    """The GC paper's CNN, the PyTorch MNIST example network: conv32 → conv64 → max-pool → dropout 0.25 → fc128 →
    dropout 0.5 → classifier, 3×3 convolutions without padding, ReLUs, no BatchNorm (channels × ``width``)."""
    c1, c2, h = (max(1, round(c * width)) for c in (32, 64, 128))
    side = (image_size - 4) // 2
    return nn.Sequential(
        Normalize(mean, std),
        nn.Conv2d(in_channels, c1, 3),
        nn.ReLU(inplace=True),
        nn.Conv2d(c1, c2, 3),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(c2 * side**2, h),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(h, num_classes),
    )


def create_model(name, data, width=1.0, seed=0) -> nn.Module:
    """Build model ``name`` for dataset ``data`` (its channels, classes and normalisation), initialised from
    ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        build = MODELS.get(name)
        return build(data.num_classes, data.in_channels, data.x.shape[-1], data.mean, data.std, width=width)
