"""LSQ, the learned-step int quantizer (method "lsq"): F on the grid of s, B for w, LSQ's gradient for s, QAT and PTQ's
MSE step, and what it changes in GC-Q: ĝ ≠ ∇ for weight-only lsq, ĝ = ∇ for weight-only int."""

import math
import re

import pytest
import torch
from conftest import toy_dataset

from qlib.attacks import run_attack
from qlib.attacks.gc import gradient_parameters
from qlib.attacks.gc_q import network
from qlib.attacks.gradpc import paq
from qlib.models import create_model
from qlib.quant import P_Q, Twin, approximate_gradient, lsq, parse_scheme, prepare_qat, ptq, quantized_state
from qlib.quant.quantizers import IntActivation, IntWeight, LSQWeight, mse_step
from qlib.train import fit


@pytest.fixture(scope="module")
def trained():
    d = toy_dataset(n=120, size=28)
    model = create_model("cnn", d, width=0.25, seed=0)
    fit(model, d, epochs=2, lr=0.05, batch_size=32, device="cpu", progress=False)
    return model.eval(), d


def lsq_layers(model):
    return [m for m in model.modules() if isinstance(m, Twin) and isinstance(m.weight_quantizer, LSQWeight)]


def test_schemes_parse_and_int_cache_keys_are_unchanged():
    s = parse_scheme("4W", "lsq")
    assert (s.method, s.name, parse_scheme("8W4A", "lsq").name) == ("lsq", "4W lsq", "8W4A lsq")
    assert parse_scheme("4W").method == "int"
    assert parse_scheme("4W").key() == {
        "task": "4W",
        "method": "int",
        "w_bits": 4,
        "a_bits": None,
        "per_channel": False,
        "scale_1bit": True,
        "keep_fp": ("first", "last"),
        "beta": (5.0, 50.0),
        "act_momentum": 0.1,
    }


@pytest.mark.parametrize("task", ["1W", "1W1A", "4W1A"])
def test_lsq_on_a_one_bit_part_is_refused_naming_the_allowed_methods(task):
    with pytest.raises(
        ValueError, match=re.escape(f"task '{task}' has a 1-bit part: use method 'bnn', 'bnn++' or 'adabin', not 'lsq'")
    ):
        parse_scheme(task, "lsq")
    with pytest.raises(ValueError, match="needs method 'int', 'lsq', 'fp8' or 'torchao'"):
        parse_scheme("4W", "adabin")


def test_F_is_eq8_on_the_grid_of_s():
    w = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    for bits, per_channel in ((4, False), (8, False), (4, True)):
        q = LSQWeight(bits, w, per_channel)
        out, s = q(w).detach(), q.step.detach()
        k = (out / s).round()
        assert torch.equal(out, s * k) and k.min() >= -(2 ** (bits - 1)) and k.max() <= 2 ** (bits - 1) - 1
        assert torch.equal(out, P_Q(w, s, q.lo, q.hi))
        assert len(torch.unique(k)) > 4  # not degenerate: the grid is used


def test_B_is_the_clipped_indicator_for_w():
    w = torch.tensor([-2.5, -2.0, -1.99, -0.3, 0.0, 0.6, 1.75, 1.76, 3.0]).requires_grad_()
    s, upstream = torch.tensor(0.25), torch.arange(1.0, 10.0)  # w/s = -10, -8, -7.96, …, 7, 7.04, 12 on [-8, 7]
    (g,) = torch.autograd.grad(lsq(w, s, -8, 7, 1.0), w, upstream)
    inside = torch.tensor([0.0, 1, 1, 1, 1, 1, 1, 0, 0])
    assert torch.equal(g, upstream * inside)


@pytest.mark.parametrize("per_channel", [False, True])
def test_step_gradient_is_lsqs_with_its_scale(per_channel):
    """∂F/∂s = ⌊w/s⌉ − w/s inside, −Q_N or Q_P outside (Esser et al. 2020, their equation 3), times g = 1/√(N_w·Q_P)."""
    w = torch.tensor([[0.9, -0.31, 0.07, -3.3], [0.02, 0.41, -0.55, 2.2]])
    q = LSQWeight(bits=3, weight=w, per_channel=per_channel)  # Q_N = 4, Q_P = 3
    n_w = 4 if per_channel else 8
    assert q.grad_scale == pytest.approx(1 / math.sqrt(n_w * 3))
    with torch.no_grad():
        q.step.fill_(0.3)
    upstream = torch.tensor([[1.0, -2.0, 0.5, 3.0], [-1.5, 0.25, 2.0, -0.5]])
    (q(w) * upstream).sum().backward()
    v = w / 0.3
    dfds = torch.where(v <= -4, -4.0, torch.where(v >= 3, 3.0, v.round() - v))
    assert (v <= -4).any() and (v >= 3).any()  # both clipped sides are exercised
    expected = (upstream * dfds).sum(dim=1, keepdim=True) if per_channel else (upstream * dfds).sum()
    assert q.step.grad.shape == q.step.shape
    assert torch.allclose(q.step.grad, q.grad_scale * expected)


def test_qat_starts_at_lsqs_init_and_trains_s(trained):
    model, d = trained
    for per_channel in (False, True):
        q = prepare_qat(model, parse_scheme("4W", "lsq", per_channel=per_channel))
        layers = lsq_layers(q)
        assert len(layers) == 2
        for m in layers:
            dims = (1, 2, 3) if per_channel and m.weight.ndim == 4 else (1,) if per_channel else None
            mean = m.weight.abs().mean(dim=dims, keepdim=True) if dims else m.weight.abs().mean()
            assert torch.allclose(m.weight_quantizer.step, 2 * mean / math.sqrt(7))
        before = [m.weight_quantizer.step.detach().clone() for m in layers]
        assert all(any(p is m.weight_quantizer.step for p in q.parameters()) for m in layers)
        fit(q, d, epochs=1, lr=0.05, batch_size=32, device="cpu", progress=False)
        assert all(not torch.allclose(b, m.weight_quantizer.step) for b, m in zip(before, layers))
        assert all((m.weight_quantizer.step > 0).all() for m in layers)


def test_wa_lsq_keeps_int_activations(trained):
    q = prepare_qat(trained[0], parse_scheme("4W4A", "lsq"))
    assert len(lsq_layers(q)) == 2 and any(isinstance(m, IntActivation) for m in q.modules())


@pytest.mark.parametrize("bits,per_channel", [(4, False), (8, False), (4, True)])
def test_ptq_mse_step_is_the_grid_minimiser_and_beats_max_abs(trained, bits, per_channel):
    model, _ = trained
    scheme = parse_scheme(f"{bits}W", "lsq", per_channel=per_channel)
    q = ptq(model, scheme)
    state = quantized_state(q)
    assert set(state) == set(model.state_dict())  # the step is folded into w*
    for name, m in q.named_modules():
        if not isinstance(m, Twin):
            continue
        w, s, lo, hi = m.weight.detach(), m.weight_quantizer.step.detach(), m.weight_quantizer.lo, m.weight_quantizer.hi
        max_abs = IntWeight(bits, per_channel).scale(w)
        dims = tuple(range(1, w.ndim)) if per_channel else tuple(range(w.ndim))
        err = lambda step, w=w, lo=lo, hi=hi, dims=dims: ((w - P_Q(w, step, lo, hi)) ** 2).sum(
            dim=dims, keepdim=per_channel
        )
        assert (s <= max_abs).all() and (err(s) <= err(max_abs)).all()
        grid = torch.stack([err(max_abs * (k / 100)) for k in range(1, 101)])
        assert torch.equal(err(s), grid.min(dim=0).values)
        assert torch.equal(state[f"{name}.weight"], P_Q(w, s, lo, hi))
    assert any((m.weight_quantizer.step < IntWeight(bits, per_channel).scale(m.weight)).any() for m in lsq_layers(q))


def test_mse_step_clips_gaussian_weights():
    w = torch.randn(4096, generator=torch.Generator().manual_seed(0))
    s = mse_step(w, 4, per_channel=False)
    assert s < w.abs().max() / 7 and ((w / s).abs() > 8).float().mean() > 0  # some weights fall outside the grid


def test_paq_uses_the_mse_step_of_the_target(trained):
    model, _ = trained
    q = paq(model, parse_scheme("4W", "lsq"))
    for m in lsq_layers(q):
        assert torch.equal(m.weight_quantizer.step, mse_step(m.weight.detach(), 4, False))


def weight_grads(net, d):
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    return dict(zip(names, approximate_gradient(net, d.x, d.y)))


def test_ghat_differs_from_the_plain_gradient_for_lsq_not_for_int(trained):
    """With PAQ on, both networks compute with ŵ* = F(ŵ); ĝ multiplies the gradient by B, which under LSQ's MSE step
    is 0 at the clipped weights. Under the int max-abs scale B ≡ 1 (but for float rounding at the largest |w|,
    see test_gc_q)."""
    target, d = trained
    for method in ("lsq", "int"):
        scheme = parse_scheme("4W", method)
        ghat, plain = (weight_grads(network(target, scheme, True, q, d), d) for q in (True, False))
        assert set(ghat) == set(plain)  # LSQ's step is not among the parameters
        qnet = network(target, scheme, True, True, d)
        differ = False
        for name, m in qnet.named_modules():
            if not isinstance(m, Twin):
                continue
            w = m.weight.detach()
            if method == "int":
                edge = w.abs() == w.abs().max()
                assert torch.allclose(ghat[f"{name}.weight"][~edge], plain[f"{name}.weight"][~edge], atol=1e-5)
                continue
            v = w / m.weight_quantizer.step
            inside = (v >= m.weight_quantizer.lo) & (v <= m.weight_quantizer.hi)
            assert torch.allclose(ghat[f"{name}.weight"], plain[f"{name}.weight"] * inside, atol=1e-5)
            differ |= bool((~inside & (plain[f"{name}.weight"] != 0)).any())
        assert differ or method == "int"


def test_the_step_gets_no_gradient_inside_gc_q(trained):
    target, d = trained
    scheme = parse_scheme("4W", "lsq")
    for p, g in ((True, True), (False, True)):
        net = network(target, scheme, p, g, d)
        steps = [m.step for m in net.modules() if isinstance(m, LSQWeight)]
        assert steps and not any(s.requires_grad for s in steps)
        assert not any(s is q for s in steps for q in gradient_parameters(net, "all"))
    poison = run_attack(
        "gc_q", d, 0.1, seed=2, target=target, scheme=scheme, epochs=2, lr=0.01, threshold=0, device="cpu"
    )
    assert poison.provenance["params"]["scheme"] == "4W lsq"
