"""AdaBin (Tu et al. 2022): the adaptive binary sets of weights and activations, Maxout, and whole models."""

import copy
import time

import pytest
import torch
from conftest import toy_dataset
from torch import nn

from qlib import data as qdata
from qlib.data import SOURCES, _find
from qlib.models import create_model
from qlib.quant import approximate_gradient, parse_scheme, prepare_qat, ptq, quantized_state
from qlib.quant.functions import sign_ede
from qlib.quant.layers import relu_channels
from qlib.quant.quantizers import AdaBinActivation, AdaBinWeight, Maxout, SignActivation
from qlib.train import evaluate, fit

ADABIN = parse_scheme("1W1A", "adabin")


@pytest.fixture
def data():
    return toy_dataset(n=160, size=28)


@pytest.fixture
def model(data):
    return create_model("cnn", data, width=0.25, seed=0)


def per_channel(w):
    return w.reshape(len(w), -1)


@pytest.mark.parametrize("shape", [(6, 4, 3, 3), (5, 40)])
def test_weights_take_the_two_values_beta_minus_and_plus_alpha_per_channel(shape):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(shape, generator=g) * torch.rand(shape[0], *[1] * (len(shape) - 1), generator=g) + 0.3
    q = per_channel(AdaBinWeight()(w))
    flat = per_channel(w)
    beta, alpha = flat.mean(1), flat.std(1, unbiased=False)  # β_w = mean, α_w = ‖w − β_w‖₂/√n
    for c in range(len(q)):
        values = torch.unique(q[c])
        assert len(values) == 2
        assert torch.allclose(values, torch.stack([beta[c] - alpha[c], beta[c] + alpha[c]]), atol=1e-6)
        assert torch.equal(q[c] > beta[c], flat[c] >= beta[c])  # the upper value exactly where w ≥ β_w


def test_weights_keep_the_mean_and_std_of_each_channel():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(8, 50, generator=g)
    w = torch.cat([v, -v], 1) * torch.rand(8, 1, generator=g) + torch.randn(8, 1, generator=g)  # half above the mean
    q = AdaBinWeight()(w)
    assert torch.allclose(q.mean(1), w.mean(1), atol=1e-5)
    assert torch.allclose(q.std(1, unbiased=False), w.std(1, unbiased=False), atol=1e-5)
    big = torch.randn(4, 20000, generator=g) * 0.05 - 0.01  # any roughly symmetric w: close, not exact
    assert torch.allclose(AdaBinWeight()(big).mean(1), big.mean(1), atol=5e-4)
    assert torch.allclose(AdaBinWeight()(big).std(1), big.std(1), rtol=1e-3)


def test_ede_backward_and_its_schedule():
    x = torch.linspace(-3, 3, 13, requires_grad=True)
    sign_ede(x, 2.0, 0.5).sum().backward()
    assert torch.allclose(x.grad, 2.0 * 0.5 * (1 - torch.tanh(0.5 * x.detach()) ** 2))
    q = AdaBinWeight()
    assert q.t == pytest.approx(1e-3)
    q.set_progress(0.5)
    assert q.t == pytest.approx(0.1)  # geometric: 10⁻³·(10/10⁻³)^0.5
    q.set_progress(1.0)
    assert q.t == pytest.approx(10.0)


@pytest.mark.parametrize("progress", [0.0, 0.6, 1.0])
def test_weight_gradient_flows_through_ede_and_through_alpha_and_beta(progress):
    """As the official code: B = EDE at (w − β_w)/α_w, and α_w, β_w are differentiated as functions of w."""
    g = torch.Generator().manual_seed(2)
    w, up = torch.randn(3, 2, 3, 3, generator=g), torch.randn(3, 2, 3, 3, generator=g)
    q = AdaBinWeight()
    q.set_progress(progress)
    k, t = max(1 / q.t, 1.0), q.t
    w1 = w.clone().requires_grad_(True)
    (q(w1) * up).sum().backward()
    # reference: straight-through written with tanh, whose derivative is the EDE (forward value still sign)
    w2 = w.clone().requires_grad_(True)
    beta = w2.mean((1, 2, 3), keepdim=True)
    alpha = ((w2 - beta) ** 2).mean((1, 2, 3), keepdim=True).sqrt()
    x = (w2 - beta) / alpha
    soft = k * torch.tanh(t * x)
    ref = alpha * (torch.where(x >= 0, 1.0, -1.0) + soft - soft.detach()) + beta
    (ref * up).sum().backward()
    assert torch.allclose(w1.grad, w2.grad, atol=1e-5)
    detached = w.clone().requires_grad_(True)  # the α, β paths matter: constants would give another gradient
    a, b = AdaBinWeight.center_distance(detached.detach())
    (a * sign_ede((detached - b) / a, k, t) * up).sum().backward()
    assert not torch.allclose(w1.grad, detached.grad, atol=1e-4)


def test_activation_gradients_for_a_alpha_and_beta_are_the_papers():
    """x = (a − β_a)/α_a: ∂F/∂a = 1_{|x|≤1}, ∂F/∂α_a = sign(x) − x·1_{|x|≤1}, ∂F/∂β_a = 1_{|x|>1}."""
    act = AdaBinActivation()
    with torch.no_grad():
        act.alpha.fill_(0.7)
        act.beta.fill_(0.2)
    a = torch.tensor([-1.5, -0.45, -0.2, 0.1, 0.2, 0.5, 0.85, 0.95, 2.0], requires_grad=True)
    up = torch.linspace(0.5, 1.3, len(a))
    out = act(a)
    assert torch.allclose(out, torch.where(a >= 0.2, 0.9, -0.5))  # {β − α, β + α}
    (out * up).sum().backward()
    x = (a.detach() - 0.2) / 0.7
    inside = (x.abs() <= 1).float()
    assert 0 < inside.sum() < len(a)  # both cases covered
    assert torch.allclose(a.grad, up * inside)
    sign = torch.where(x >= 0, 1.0, -1.0)  # sign(0) = +1, as in the forward pass
    assert torch.allclose(act.alpha.grad, (up * (sign - x * inside)).sum())
    assert torch.allclose(act.beta.grad, (up * (1 - inside)).sum())


def test_activation_starts_at_alpha_one_beta_zero():
    act = AdaBinActivation()
    assert act.alpha.item() == 1.0 and act.beta.item() == 0.0
    x = torch.tensor([-2.0, -0.1, 0.0, 0.3])
    assert torch.equal(act(x), torch.tensor([-1.0, -1.0, 1.0, 1.0]))


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (4, 3)])
def test_maxout_starts_as_leaky_relu_per_channel(shape):
    m = Maxout(3)
    assert torch.equal(m.gamma_pos, torch.ones(3)) and torch.equal(m.gamma_neg, torch.full((3,), 0.25))
    x = torch.randn(shape)
    assert torch.allclose(m(x), torch.where(x >= 0, x, 0.25 * x))
    assert torch.equal(nn.Sequential(m, AdaBinActivation())(x), SignActivation()(x))  # sign kept: binarized = BNN's
    with torch.no_grad():
        m.gamma_pos.copy_(torch.tensor([1.0, 2.0, 3.0]))
        m.gamma_neg.copy_(torch.tensor([0.1, 0.2, 0.3]))
    view = (1, 3) + (1,) * (len(shape) - 2)
    pos, neg = torch.tensor([1.0, 2.0, 3.0]).view(view), torch.tensor([0.1, 0.2, 0.3]).view(view)
    expected = pos * x.clamp_min(0) + neg * x.clamp_max(0)
    assert torch.allclose(m(x), expected)
    with pytest.raises(ValueError, match="3 channels"):
        m(torch.randn(4, 5))


def test_1w1a_replaces_every_relu_by_maxout_then_binarizer(model):
    q = prepare_qat(model, ADABIN)
    assert not any(isinstance(m, nn.ReLU) for m in q.modules())
    assert [len(m.gamma_pos) for m in q.modules() if isinstance(m, Maxout)] == [8, 16, 32]  # cnn at width 0.25
    assert sum(isinstance(m, AdaBinActivation) for m in q.modules()) == 3
    assert all(isinstance(q.get_submodule(n).weight_quantizer, AdaBinWeight) for n in ("5", "10"))
    weights_only = prepare_qat(model, parse_scheme("1W", "adabin"))
    assert sum(isinstance(m, nn.ReLU) for m in weights_only.modules()) == 3
    assert set(weights_only.state_dict()) == set(model.state_dict())


def test_resnet18_channels_are_inferred_and_it_trains_a_step():
    d = toy_dataset(n=8, channels=3, size=32, num_classes=10)
    model = create_model("resnet18", d, width=0.125, seed=0)
    channels = relu_channels(model)
    assert (channels["2"], channels["3.act"], channels["5.body.1"], channels["5.act"]) == (8, 8, 16, 16)  # 5: 8 → 16
    q = prepare_qat(model, ADABIN)
    assert not any(isinstance(m, nn.ReLU) for m in q.modules())
    assert sum(isinstance(m, Maxout) for m in q.modules()) == 17  # stem + 2 per block
    fit(q, d, epochs=1, lr=0.01, batch_size=4, device="cpu", progress=False)
    assert torch.isfinite(q.eval()(d.x)).all()


def test_channels_that_cannot_be_inferred_are_a_clear_error():
    model = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(4, 2), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="cannot infer the channels of ReLU '0'"):
        prepare_qat(model, parse_scheme("1W1A", "adabin", keep_fp=()))
    prepare_qat(model, parse_scheme("1W1A", "bnn", keep_fp=()))  # the other methods need no channels


def test_state_dict_round_trip_and_deepcopy_give_identical_outputs(model, data):
    q = prepare_qat(model, ADABIN)
    fit(q, data, epochs=1, lr=0.05, batch_size=32, device="cpu", progress=False)
    assert not torch.equal(q.get_submodule("3.0").gamma_neg, torch.full((8,), 0.25))  # trained, not initial
    fresh = prepare_qat(create_model("cnn", data, width=0.25, seed=1), ADABIN)
    fresh.load_state_dict(q.state_dict())
    twin = copy.deepcopy(q)
    q.eval(), fresh.eval(), twin.eval()
    with torch.no_grad():
        assert torch.equal(fresh(data.x), q(data.x)) and torch.equal(twin(data.x), q(data.x))


def test_quantized_state_has_two_values_per_output_channel(model):
    state = quantized_state(prepare_qat(model, ADABIN))
    for name in ("5.weight", "10.weight"):
        assert all(len(torch.unique(row)) == 2 for row in per_channel(state[name]))
    assert torch.equal(state["1.weight"], model.state_dict()["1.weight"])  # first conv kept FP
    assert torch.equal(state["3.0.gamma_neg"], torch.full((8,), 0.25))


def test_ptq_needs_no_calibration_and_its_activations_are_bnn_sign(model, data):
    fit(model, data, epochs=2, lr=0.05, batch_size=32, device="cpu", progress=False)
    q = ptq(model, ADABIN)
    assert not q.training and torch.isfinite(q(data.x)).all()
    bnn = ptq(model, parse_scheme("1W1A", "bnn"))
    for name in ("5", "10"):
        bnn.get_submodule(name).weight_quantizer = AdaBinWeight()
    with torch.no_grad():
        assert torch.allclose(q(data.x), bnn(data.x), atol=1e-5)


def test_gradient_of_the_gradient_exists_for_attacks(model, data):
    q = prepare_qat(model, ADABIN).eval()
    x = data.x[:8].clone().requires_grad_(True)
    grads = approximate_gradient(q, x, data.y[:8], create_graph=True)
    (gx,) = torch.autograd.grad(sum((g**2).sum() for g in grads), [x])
    assert torch.isfinite(gx).all() and gx.abs().sum() > 0


def test_schemes_accept_adabin_for_one_bit_tasks_only():
    assert parse_scheme("1W1A", "adabin").name == "1W1A adabin"
    assert (parse_scheme("1W", "adabin").w_bits, parse_scheme("1W", "adabin").a_bits) == (1, None)
    message = r"method 'adabin' is for tasks with a 1-bit part .*'adabin'.*'4W' needs method 'int'"
    with pytest.raises(ValueError, match=message):
        parse_scheme("4W", "adabin")
    with pytest.raises(ValueError, match="'bnn', 'bnn\\+\\+' or 'adabin', not 'int'"):
        parse_scheme("1W1A", "int")


@pytest.mark.skipif(_find(SOURCES.get("fashion-mnist"), "train") is None, reason="Fashion-MNIST not installed")
def test_1w1a_adabin_qat_learns_real_fashion_mnist(effect):
    """2000 training images, cnn width 0.5, 4 epochs, lr 0.05, batch 128: chance is 10%. Measured on 2 shared CPU
    cores with OMP_NUM_THREADS=1: test accuracy 0.766 (2000 test images), fit 20-24 s; 1W1A bnn under the same
    settings: 0.648 in 9 s."""
    train = qdata.load("fashion-mnist", "train").subset(2000, seed=0)
    test = qdata.load("fashion-mnist", "test").subset(2000, seed=0)
    q = prepare_qat(create_model("cnn", train, width=0.5, seed=effect.seed), ADABIN)
    start = time.perf_counter()
    fit(q, train, epochs=4, lr=0.05, batch_size=128, seed=effect.seed, device="cpu", progress=False)
    acc = evaluate(q, test)
    print(f"1W1A adabin: test accuracy {acc:.3f} after {time.perf_counter() - start:.1f} s")
    effect.check("adabin 1W1A accuracy", acc)
