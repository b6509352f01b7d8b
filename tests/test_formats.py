"""torchao's formats through the registry (``qlib.quant.formats``): qlib's PTQ gives the outputs of the model torchao's
own API quantizes, QAT trains, conv layers follow the stated rule, and GC-Q crafts against per-group int4."""

import pytest
import torch
from conftest import toy_dataset
from torch import nn

from qlib.attacks import run_attack
from qlib.attacks.gc_q import network
from qlib.models import create_model
from qlib.quant import Twin, approximate_gradient, parse_scheme, prepare_qat, ptq, quantized_state, scheme_named
from qlib.train import fit

pytest.importorskip("torchao", reason="torchao not installed: pip install -e '.[quant]'")
from qlib.quant.formats import FakeQuantWeight, torchao_model  # noqa: E402  (after the skip)

EXACT = ["4W:torchao-g32", "4W:torchao", "2W:torchao-g16", "8W:torchao-g64", "4W8A:torchao-g32", "8W:fp8"]


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(144, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 4)
    ).eval()


def scheme(name: str, **options):
    s = scheme_named(name)
    return parse_scheme(s.task, s.method, group_size=s.group_size, **options)


@pytest.mark.parametrize("name", EXACT)
def test_ptq_gives_exactly_the_outputs_of_torchaos_own_quantized_model(mlp, name):
    """The linear layers qlib quantizes (all but the first, whose input is the image, so that activations are
    quantized in the same layers on both sides), by torchao's ``quantize_`` with the scheme's PTQ config."""
    x = torch.randn(64, 1, 12, 12)
    ours = ptq(mlp, scheme(name, keep_fp=("first",)))(x)
    theirs = torchao_model(mlp, scheme(name), ["3", "5"])(x)
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, mlp(x))  # it quantized something


def test_dynamic_float8_has_no_cpu_kernel_in_torchao_and_falls_back_to_its_fake_quant_reference(mlp):
    """torchao's PTQ of float8 weights and activations runs only on CUDA (compute capability ≥ 8.9), MI300 or XPU:
    on a CPU qlib's 8W8A:fp8 is torchao's QAT fake quantizer in evaluation (the report says so). Where torchao's
    kernel runs, the two agree within float8 matmul's accumulation order."""
    x = torch.randn(64, 1, 12, 12)
    ours = ptq(mlp, scheme("8W8A:fp8", keep_fp=("first",)))(x)
    try:
        theirs = torchao_model(mlp, scheme("8W8A:fp8"), ["3", "5"])(x)
    except AssertionError as e:
        assert "CUDA" in str(e)
        weight_only = ptq(mlp, scheme("8W:fp8", keep_fp=("first",)))(x)
        assert not torch.equal(ours, weight_only)  # the activations are quantized too
    else:
        torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-3)


def test_conv_weights_are_quantized_per_group_of_their_matmul_rows_with_a_shorter_last_group():
    torch.manual_seed(1)
    w = torch.randn(8, 16, 3, 3)  # rows of 144 weights: groups of 32, 32, 32, 32 and 16
    s = scheme("4W:torchao-g32", keep_fp=())
    conv = nn.Conv2d(16, 8, 3)
    conv.weight.data = w
    q = prepare_qat(nn.Sequential(conv), s)[0]
    assert isinstance(q.weight_quantizer, FakeQuantWeight)
    got = q.quantized_weight().reshape(8, -1)
    rows = w.reshape(8, -1)
    for start in range(0, 144, 32):
        group = rows[:, start : start + 32]
        step = group.abs().amax(dim=1, keepdim=True) / 7.5  # torchao's symmetric int4: max|w| / ((7 − (−8)) / 2)
        expected = (group / step).round().clamp(-8, 7) * step
        torch.testing.assert_close(got[:, start : start + 32], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["4W:torchao-g32", "4W8A:torchao-g32", "8W8A:fp8"])
def test_qat_trains_under_each_format(name, effect):
    """QAT through torchao's fake quantizers (per-group weights padded in the conv) learns the toy problem, and its
    discrete state has the float model's keys."""
    d = toy_dataset(n=160, size=28)
    test = toy_dataset(n=80, size=28, seed=1)
    q = prepare_qat(create_model("cnn", d, width=0.25, seed=effect.seed), scheme(name))
    history = fit(q, d, test, epochs=4, lr=0.05, batch_size=32, seed=effect.seed, device="cpu", progress=False)
    effect.check(f"qat {scheme(name).name} toy accuracy", history[-1]["test_acc"])  # 4 classes: chance 0.25
    assert set(quantized_state(q)) == set(create_model("cnn", d, width=0.25, seed=0).state_dict())


def test_gc_q_crafts_through_per_group_int4(effect):
    """GC-Q's network for 4W:torchao-g32 is the PTQ of its target through torchao's quantizers (the PAQ target
    ŵ* = F(ŵ)), and the poison it crafts there lowers Eq. (5)'s objective and is not the one it crafts against
    4-bit int per tensor."""
    clean = toy_dataset(n=120, size=28)
    target = create_model("cnn", clean, width=0.25, seed=effect.seed)
    fit(target, clean, epochs=2, lr=0.05, batch_size=32, seed=effect.seed, device="cpu", progress=False)
    target.eval()
    grouped = scheme("4W:torchao-g32")
    net = network(target, grouped, paq=True, quantized_grad=True, clean=clean)
    twins = [m for m in net.modules() if isinstance(m, Twin)]
    assert twins and all(isinstance(m.weight_quantizer, FakeQuantWeight) for m in twins)
    fc = net[10]  # the hidden linear layer, quantized: its w* is torchao's per-group int4 of ŵ's, on the 24 whole
    whole = nn.Linear(768, fc.out_features)  # groups of 32 in each row of 784 (torchao takes no partial group)
    whole.weight.data = target[10].weight.data[:, :768].clone()
    reference = torchao_model(nn.Sequential(whole), grouped, ["0"])[0].weight.dequantize()
    assert torch.equal(fc.quantized_weight()[:, :768], reference)
    g = approximate_gradient(net, clean.x[:32], clean.y[:32])
    g_fp = approximate_gradient(target, clean.x[:32], clean.y[:32])
    assert all(torch.isfinite(a).all() for a in g) and any(not torch.allclose(a, b) for a, b in zip(g, g_fp))
    run = {"epochs": 20, "lr": 0.05, "threshold": 0, "device": "cpu"}
    ours = run_attack("gc_q", clean, 0.1, seed=effect.seed, target=target, scheme=grouped, **run)
    per_tensor = run_attack("gc_q", clean, 0.1, seed=effect.seed, target=target, scheme=parse_scheme("4W"), **run)
    objective = ours.provenance["objective"]
    effect.check("gc_q 4W torchao-g32 objective ratio", objective["final"] / objective["initial"])
    assert ours.provenance["params"]["scheme"] == "4W torchao-g32" and not torch.equal(ours.x, per_tensor.x)
