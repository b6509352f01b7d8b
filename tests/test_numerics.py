"""The numeric policy (``qlib.numerics``): TF32 off, the deterministic switch, float32 activation grids, a pooling
with a deterministic backward, and the policy in every manifest."""

import pytest
import torch

from qlib import numerics
from qlib.models import GlobalAvgPool
from qlib.quant.functions import P_Q
from qlib.quant.quantizers import IntActivation


@pytest.fixture(autouse=True)
def restore():
    yield
    numerics.configure(False)


def test_configure_turns_tf32_off_and_sets_the_deterministic_switch():
    numerics.configure(True)
    assert torch.backends.cudnn.conv.fp32_precision == torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    numerics.configure(False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert "deterministic False" in numerics.policy(torch.device("cpu"))
    assert numerics.policy(torch.device("cuda")).startswith("training bf16 autocast")


def test_a_preset_sets_the_policy_when_its_data_is_loaded(monkeypatch):
    from qlib import cells
    from qlib.presets import load_preset

    cells._load.cache_clear()  # the data of an earlier test's preset would be served from memory, not loaded
    monkeypatch.setattr(cells.data, "load", lambda *a, **k: pytest.skip("no data needed past configure"))
    with pytest.raises(pytest.skip.Exception):
        cells.load_data(load_preset("smoke", deterministic=True))
    assert torch.are_deterministic_algorithms_enabled()


def test_activation_grid_is_float32_under_bf16_autocast():
    """The scale stays float32: levels are k·s with s exact, then rounded once to the input's dtype."""
    q = IntActivation(8)
    x = torch.linspace(0, 3.7, 1000).view(10, 100)
    q.train()(x)  # calibrates the running max
    q.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = q(x.bfloat16())
    s = (q.running_max / 255).clamp_min(torch.finfo(torch.float32).tiny)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, P_Q(x.bfloat16().float(), s, 0, 255).bfloat16())


def test_global_average_pool_is_adaptive_pool_and_flatten():
    x = torch.randn(4, 8, 5, 5)
    ref = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())(x)
    torch.testing.assert_close(GlobalAvgPool()(x), ref)


@pytest.mark.parametrize(
    "shape, cin, stride", [((24, 8, 32, 32), 8, 2), ((16, 64, 16, 16), 64, 2), ((20, 4, 9, 9), 4, 3)]
)
def test_the_strided_1x1_route_around_gives_the_same_values_and_gradients(shape, cin, stride):
    """``numerics.conv2d`` (a strided 1×1 convolution on channels_last input run at stride 1 on every s-th pixel)
    gives the plain convolution's output and both gradients bit for bit, on shapes where the plain one is safe."""
    import torch
    from torch import nn

    from qlib import numerics

    torch.manual_seed(0)
    conv = nn.Conv2d(cin, 2 * cin, 1, stride, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    outs = []
    for forward in (
        lambda a: numerics.conv2d(conv, a, conv.weight, conv.bias),
        lambda a: conv._conv_forward(a, conv.weight, conv.bias),
    ):
        a = x.clone().requires_grad_()
        conv.weight.grad = None
        y = forward(a)
        y.pow(2).sum().backward()
        outs.append((y.detach(), a.grad, conv.weight.grad.clone()))
    for mine, plain in zip(*outs):
        assert torch.equal(mine, plain)
