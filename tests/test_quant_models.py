"""Schemes by name, PTQ and QAT on whole models."""

import pytest
import torch
from conftest import toy_dataset
from torch import nn

from qlib.models import create_model
from qlib.quant import (
    TASKS,
    QConv2d,
    QLinear,
    approximate_gradient,
    eligible_layers,
    parse_scheme,
    prepare_qat,
    ptq,
    quantized_state,
)
from qlib.quant.quantizers import IntActivation, SignActivation, SignSwishActivation
from qlib.train import evaluate, fit


@pytest.fixture
def data():
    return toy_dataset(n=160, size=28)


@pytest.fixture
def model(data):
    return create_model("cnn", data, width=0.25, seed=0)


def test_paper_tasks_parse():
    for task in TASKS:
        s = parse_scheme(task, "bnn++" if task.startswith("1W") else None)
        assert s.task == task
    s = parse_scheme("4W4A")
    assert (s.w_bits, s.a_bits, s.method, s.name) == (4, 4, "int", "4W4A")
    assert parse_scheme("1W").method == "bnn" and parse_scheme("1W1A", "bnn++").name == "1W1A bnn++"
    assert parse_scheme("fp").is_fp


@pytest.mark.parametrize(
    "task,method,message",
    [
        ("0W", None, r"bits=0 .* outside 1-32"),
        ("33W", None, r"bits=33 .* outside 1-32"),
        ("4W40A", None, "bits=40"),
        ("4X", None, "unknown task '4X'; valid: fp, 1W, 1W1A"),
        ("4W", "ternary", "unknown method 'ternary'; valid: int, lsq, bnn"),
        ("1W", "int", "1-bit part"),
        ("8W", "bnn", "needs method 'int'"),
        ("fp", "int", "no quantization method"),
    ],
)
def test_bad_schemes_name_the_bad_value(task, method, message):
    with pytest.raises(ValueError, match=message):
        parse_scheme(task, method)


def test_bad_keep_fp_is_rejected():
    with pytest.raises(ValueError, match="keep_fp"):
        parse_scheme("4W", keep_fp=("middle",))


def test_first_conv_and_last_linear_stay_full_precision(model):
    q = prepare_qat(model, parse_scheme("4W"))
    layers = [m for m in q.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert type(layers[0]) is nn.Conv2d and type(layers[-1]) is nn.Linear
    assert all(isinstance(m, (QConv2d, QLinear)) for m in layers[1:-1]) and len(layers) == 4
    everything = prepare_qat(model, parse_scheme("4W", keep_fp=()))
    assert all(isinstance(m, (QConv2d, QLinear)) for m in everything.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert eligible_layers(model, ("last",)) == ["1", "5", "10"]


def test_prepare_qat_copies_and_keeps_state_dict_keys(model):
    q = prepare_qat(model, parse_scheme("8W8A"))
    assert set(model.state_dict()) <= set(q.state_dict())
    assert all(torch.equal(model.state_dict()[k], q.state_dict()[k]) for k in model.state_dict())
    assert not any(isinstance(m, QConv2d) for m in model.modules())  # the original is untouched


def test_qat_forward_uses_quantized_weights(model, data):
    q = prepare_qat(model, parse_scheme("4W")).eval()
    conv = next(m for m in q.modules() if isinstance(m, QConv2d))
    assert len(torch.unique(conv.quantized_weight())) <= 15
    reference = model.eval()
    reference.get_submodule("5").weight.data.copy_(conv.quantized_weight())  # "5" is the second conv
    reference.get_submodule("10").weight.data.copy_(q.get_submodule("10").quantized_weight())
    assert torch.allclose(q(data.x[:8]), reference(data.x[:8]), atol=1e-5)


def test_qat_gradient_is_B_times_gradient_at_w_star(model, data):
    """Eq. (10): the latent weight's gradient equals B ⊙ ∇ℓ(w*) with B the clipped indicator."""
    scheme = parse_scheme("2W", per_channel=False)
    q = prepare_qat(model, scheme).eval()
    conv = q.get_submodule("5")
    half = conv.weight.detach().abs().max() / 2
    conv.weight_quantizer.scale = lambda w: half  # a scale that clips the larger weights, so B is not all ones
    grads = dict(zip([n for n, _ in q.named_parameters()], approximate_gradient(q, data.x[:16], data.y[:16])))
    w_star = conv.quantized_weight().detach().requires_grad_(True)
    float_model = model.eval()
    state = quantized_state(q)
    float_model.load_state_dict({k: v for k, v in state.items() if k in float_model.state_dict()})
    float_model.get_submodule("5").weight = nn.Parameter(w_star)
    loss = nn.functional.cross_entropy(float_model(data.x[:16]), data.y[:16], reduction="sum")
    (g_star,) = torch.autograd.grad(loss, [float_model.get_submodule("5").weight])
    s = conv.weight_quantizer.scale(conv.weight)
    inside = ((conv.weight / s) >= -2) & ((conv.weight / s) <= 1)
    assert 0 < inside.float().mean() < 1
    assert torch.allclose(grads["5.weight"], g_star * inside, atol=1e-5)


def test_one_bit_activations_replace_every_relu(model):
    for method, cls in (("bnn", SignActivation), ("bnn++", SignSwishActivation)):
        q = prepare_qat(model, parse_scheme("1W1A", method))
        assert not any(isinstance(m, nn.ReLU) for m in q.modules())
        assert sum(isinstance(m, cls) for m in q.modules()) == 3
    assert sum(isinstance(m, IntActivation) for m in prepare_qat(model, parse_scheme("4W4A")).modules()) == 2


def test_quantized_state_is_discrete(model):
    state = quantized_state(prepare_qat(model, parse_scheme("1W", "bnn++")))
    w = state["5.weight"]
    assert len(torch.unique(w.abs())) == 1  # ±α
    assert torch.equal(state["1.weight"], model.state_dict()["1.weight"])  # first conv kept FP


def test_ptq_8bit_matches_fp_and_needs_calibration_for_activations(data, effect):
    model = create_model("cnn", data, width=0.25, seed=effect.seed)
    fit(model, data, epochs=2, lr=0.05, batch_size=32, seed=effect.seed, device="cpu", progress=False)
    fp = evaluate(model, data)
    effect.check("ptq 8W accuracy change", abs(evaluate(ptq(model, parse_scheme("8W")), data) - fp))
    with pytest.raises(ValueError, match="calib"):
        ptq(model, parse_scheme("8W8A"))
    q = ptq(model, parse_scheme("8W8A"), calib=data)
    effect.check("ptq 8W8A accuracy change", abs(evaluate(q, data) - fp))
    assert all(a.seen for a in q.modules() if isinstance(a, IntActivation))


@pytest.mark.parametrize("task,method", [("4W4A", None), ("1W", "bnn"), ("1W1A", "bnn++")])
def test_fit_trains_qat_models_unchanged(data, task, method, effect):
    q = prepare_qat(create_model("cnn", data, width=0.25, seed=effect.seed), parse_scheme(task, method))
    history = fit(q, data, data, epochs=4, lr=0.05, batch_size=32, seed=effect.seed, device="cpu", progress=False)
    effect.check(
        f"qat {parse_scheme(task, method).name} toy accuracy", history[-1]["test_acc"]
    )  # 4 classes: chance 0.25


def test_fit_raises_beta_of_bnn_pp(model, data):
    q = prepare_qat(model, parse_scheme("1W", "bnn++", beta=(2.0, 20.0)))
    fit(q, data, epochs=1, lr=0.05, batch_size=32, device="cpu", progress=False)
    betas = {m.beta for m in q.modules() if hasattr(m, "set_progress")}
    assert len(betas) == 1 and 2.0 * 10 ** (4 / 5) - 1e-6 <= betas.pop() < 20.0  # last of 5 steps: t = 4/5


@pytest.mark.parametrize("task,method", [("4W4A", None), ("1W1A", "bnn"), ("1W1A", "bnn++")])
def test_resnet18_quantizes_and_trains_a_step(task, method):
    d = toy_dataset(n=8, channels=3, size=32, num_classes=10)
    model = create_model("resnet18", d, width=0.125, seed=0)
    q = prepare_qat(model, parse_scheme(task, method))
    twins = [m for m in q.modules() if isinstance(m, (QConv2d, QLinear))]
    assert len(twins) == 19  # 20 convs (incl. 3 shortcuts) + 1 linear, less the first conv and the last linear
    if task == "1W1A":
        assert not any(isinstance(m, nn.ReLU) for m in q.modules())
    fit(q, d, epochs=1, lr=0.01, batch_size=4, device="cpu", progress=False)
    assert torch.isfinite(q.eval()(d.x)).all()
