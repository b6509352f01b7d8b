import pytest
import torch
from conftest import toy_dataset
from torch import nn

from qlib.models import MODELS, Normalize, create_model
from qlib.quant import parse_scheme, quantize_modules
from qlib.quant.quantizers import IntActivation


@pytest.mark.parametrize(
    "name,channels,size",
    [
        ("cnn", 1, 28),
        ("resnet18", 3, 32),
        ("resnet18", 1, 28),
        ("lr", 1, 28),
        ("mlp", 1, 28),
        ("cnn_plim", 1, 28),
        ("cnn_plim", 3, 32),
    ],
)
def test_output_shape(name, channels, size):
    d = toy_dataset(n=4, channels=channels, size=size, num_classes=10)
    m = create_model(name, d, width=0.25).eval()
    assert m(d.x).shape == (4, 10)


def test_layers_are_plain_torch_modules_and_normalisation_comes_first():
    d = toy_dataset(n=2, size=28)
    for name in MODELS.names():
        m = create_model(name, d, width=0.25)
        assert isinstance(m[0], Normalize)
        layers = [type(mod) for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
        assert layers and all(t in (nn.Conv2d, nn.Linear) for t in layers)


def test_resnet18_has_18_weighted_layers_and_a_3x3_stem():
    d = toy_dataset(n=2, channels=3, size=32)
    m = create_model("resnet18", d)
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d) and mod.kernel_size == (3, 3)]
    linears = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    assert len(convs) + len(linears) == 18
    assert convs[0].kernel_size == (3, 3) and convs[0].stride == (1, 1)
    assert not any(isinstance(mod, nn.MaxPool2d) for mod in m.modules())
    assert 11e6 < sum(p.numel() for p in m.parameters()) < 11.3e6


def test_normalisation_uses_dataset_constants():
    n = Normalize((0.5,), (0.25,))
    assert torch.allclose(n(torch.full((1, 1, 2, 2), 0.75)), torch.ones(1, 1, 2, 2))


def test_same_seed_same_weights_and_global_rng_untouched():
    d = toy_dataset(n=2, size=28)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = create_model("cnn", d, seed=5), create_model("cnn", d, seed=5)
    assert torch.equal(torch.rand(1), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = create_model("cnn", d, seed=6)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_unknown_model_lists_known():
    with pytest.raises(ValueError, match="unknown model 'vgg'; valid: cnn, cnn_plim, lr, mlp, resnet18"):
        create_model("vgg", toy_dataset(n=2))


def test_the_gc_papers_models_have_their_published_shapes():
    d = toy_dataset(n=2, size=28, num_classes=10)
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(create_model("lr", d)) == 784 * 10 + 10
    assert count(create_model("mlp", d)) == 784 * 128 + 128 + 128 * 10 + 10
    plim = create_model("cnn_plim", d)  # the PyTorch MNIST example: 1,199,882 parameters
    assert count(plim) == 1_199_882
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plim.modules())
    assert [m.p for m in plim.modules() if isinstance(m, nn.Dropout)] == [0.25, 0.5]


def test_wa_schemes_quantize_hidden_activations_only():
    d = toy_dataset(n=2, size=28, num_classes=10)
    whole = dict(keep_fp=())
    mlp = quantize_modules(create_model("mlp", d), parse_scheme("4W4A", **whole))
    assert len([m for m in mlp.modules() if isinstance(m, IntActivation)]) == 1  # the hidden layer's, not the image's
    with pytest.raises(ValueError, match="4W4A quantizes activations.*no quantized layer has a hidden activation"):
        quantize_modules(create_model("lr", d), parse_scheme("4W4A", **whole))
    assert quantize_modules(create_model("lr", d), parse_scheme("4W", **whole))[2].weight_quantizer is not None
