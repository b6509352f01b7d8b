"""Each forward quantizer F on exact values, and each backward against the stated B."""

import pytest
import torch

from qlib.quant import P_Q, int_range, sign, sign_swish, signswish, signswish_grad
from qlib.quant.quantizers import IntActivation, IntWeight, SignSwishWeight, SignWeight


def grad_of(f, x):
    x = x.clone().requires_grad_(True)
    f(x).sum().backward()
    return x.grad


def test_int_range():
    assert int_range(4) == (-8, 7) and int_range(8) == (-128, 127) and int_range(4, signed=False) == (0, 15)


def test_P_Q_exact_values_and_indicator_gradient():
    w = torch.tensor([-1.3, -0.74, -0.2, 0.0, 0.26, 0.5, 0.9, 1.7])
    s = torch.tensor(0.25)
    # w/s = -5.2, -2.96, -0.8, 0, 1.04, 2, 3.6, 6.8 -> clip to [-4, 3] -> round
    expected = 0.25 * torch.tensor([-4.0, -3.0, -1.0, 0.0, 1.0, 2.0, 3.0, 3.0])
    assert torch.equal(P_Q(w, s, -4, 3), expected)
    assert torch.equal(grad_of(lambda x: P_Q(x, s, -4, 3), w), torch.tensor([0.0, 1, 1, 1, 1, 1, 0, 0]))


def test_int_weight_uses_max_abs_scale():
    w = torch.tensor([0.7, -0.36, 0.12, -0.04])
    q = IntWeight(bits=4)  # s = 0.7 / 7 = 0.1: w/s = 7, -3.6, 1.2, -0.4
    assert torch.allclose(q(w), torch.tensor([0.7, -0.4, 0.1, 0.0]))
    assert len(torch.unique(IntWeight(4)(torch.randn(1000)))) <= 15  # narrow range: −7 … 7


def test_int_weight_per_channel():
    w = torch.tensor([[1.0, 0.5], [0.1, -0.02]])
    q = IntWeight(bits=2, per_channel=True)  # hi = 1: s = 1.0 and 0.1
    assert torch.allclose(q(w), torch.tensor([[1.0, 0.0], [0.1, -0.0]]))
    assert torch.allclose(IntWeight(bits=2)(w), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


def test_sign_forward_and_hardtanh_gradient():
    x = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.4, 1.0, 1.5])
    assert torch.equal(sign(x), torch.tensor([-1.0, -1, -1, 1, 1, 1, 1]))
    assert torch.equal(grad_of(sign, x), torch.tensor([0.0, 1, 1, 1, 1, 1, 0]))


def test_bnn_weight_scale_is_mean_abs():
    w = torch.tensor([[0.5, -1.5], [0.2, 0.2]])
    assert torch.allclose(SignWeight(scale=True, per_channel=False)(w), 0.6 * torch.tensor([[1.0, -1], [1, 1]]))
    assert torch.allclose(SignWeight(scale=True, per_channel=True)(w), torch.tensor([[1.0, -1.0], [0.2, 0.2]]))
    assert torch.equal(SignWeight(scale=False, per_channel=False)(w), torch.tensor([[1.0, -1], [1, 1]]))


def test_signswish_values_from_the_reference_formula():
    beta = 5.0
    x = torch.tensor([0.0, 0.2, -0.2, 0.7, 10.0])
    sig = torch.sigmoid(beta * x)
    assert torch.allclose(signswish(x, beta), 2 * sig * (1 + beta * x * (1 - sig)) - 1)
    assert signswish(torch.tensor(0.0), beta) == 0
    assert torch.allclose(signswish(torch.tensor([10.0, -10.0]), beta), torch.tensor([1.0, -1.0]), atol=1e-6)
    peak = signswish(torch.tensor(3.5 / beta), beta)  # the overshoot near βx = 3.5
    assert 1.1 < peak < 1.15


def test_signswish_derivative_is_exact():
    assert signswish_grad(torch.tensor(0.0), 5.0) == 5.0
    x = torch.linspace(-2, 2, 41, dtype=torch.float64)
    autograd = torch.func.vmap(torch.func.grad(lambda v: signswish(v, 3.0)))(x)
    assert torch.allclose(signswish_grad(x, 3.0), autograd)
    assert torch.isfinite(signswish_grad(torch.tensor([1e4, -1e4]), 5.0)).all()


def test_signswish_gradcheck_and_hard_mode():
    x = torch.linspace(-1.5, 1.5, 13, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: sign_swish(v, 4.0), (x,))
    assert torch.autograd.gradgradcheck(lambda v: sign_swish(v, 4.0), (x,))
    hard = sign_swish(x, 4.0, hard=True)
    assert torch.equal(hard, torch.where(x >= 0, 1.0, -1.0).double())
    assert torch.allclose(grad_of(lambda v: sign_swish(v, 4.0, hard=True), x.detach()), signswish_grad(x.detach(), 4.0))


def test_bnn_pp_weight_trains_with_ss_and_evaluates_with_sign():
    q = SignSwishWeight(scale=False, per_channel=False, beta=(2.0, 32.0))
    w = torch.tensor([0.3, -0.1])
    assert torch.allclose(q.train()(w), signswish(w, 2.0))
    q.set_progress(0.5)
    assert q.beta == pytest.approx(8.0)  # geometric: 2·(32/2)^0.5
    q.set_progress(1.0)
    assert q.beta == pytest.approx(32.0)
    assert torch.equal(q.eval()(w), torch.tensor([1.0, -1.0]))


def test_activation_quantizer_calibrates_unsigned_after_relu_then_freezes():
    a = IntActivation(bits=2)  # unsigned grid 0..3
    a.calibrating = True
    a(torch.tensor([0.0, 3.0]))
    a(torch.tensor([1.0, 6.0]))  # running max 6 -> s = 2
    a.calibrating = False
    a.eval()
    x = torch.tensor([0.0, 0.9, 1.1, 4.0, 9.0])
    assert torch.equal(a(x), torch.tensor([0.0, 0.0, 2.0, 4.0, 6.0]))
    assert a.running_max == 6  # frozen in evaluation
    assert torch.equal(grad_of(a, x), torch.tensor([1.0, 1, 1, 1, 0]))  # B = 1_[0, 3](x/s)


def test_activation_quantizer_goes_signed_and_tracks_an_ema_in_training():
    a = IntActivation(bits=3, momentum=0.5).train()
    a(torch.tensor([-1.0, 2.0]))
    a(torch.tensor([-1.0, 4.0]))
    assert a.running_max == 3.0 and a.running_min == -1.0
    out = a.eval()(torch.tensor([-3.0, 1.0, 5.0]))  # signed grid −4..3, s = 1
    assert torch.equal(out, torch.tensor([-3.0, 1.0, 3.0]))


def test_uncalibrated_activation_quantizer_refuses_to_evaluate():
    with pytest.raises(RuntimeError, match="calibration"):
        IntActivation(bits=4).eval()(torch.ones(3))
