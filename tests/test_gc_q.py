"""GC-Q's switches: both off is GC; both on is Eq. (5); and what the ĝ switch does (and does not) change."""

import pytest
import torch
from conftest import toy_dataset

from qlib.attacks import run_attack
from qlib.attacks.gc_q import network
from qlib.models import create_model
from qlib.quant import Twin, approximate_gradient, parse_scheme, quantize_modules
from qlib.train import fit

RUN = {"epochs": 2, "lr": 0.01, "threshold": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def setup():
    clean = toy_dataset(n=120, size=28)
    target = create_model("cnn", clean, width=0.25, seed=0)
    fit(target, clean, epochs=2, lr=0.05, batch_size=32, device="cpu", progress=False)
    return clean, target.eval()


def initial(poison):
    return poison.provenance["objective"]["initial"]


def test_both_switches_off_is_gc(setup):
    clean, target = setup
    gc = run_attack("gc", clean, 0.1, seed=2, target=target, **RUN)
    off = run_attack(
        "gc_q", clean, 0.1, seed=2, target=target, scheme=parse_scheme("4W"), paq=False, quantized_grad=False, **RUN
    )
    assert torch.equal(gc.x, off.x)
    assert gc.provenance["objective"] == off.provenance["objective"]


def test_both_switches_on_is_eq5(setup):
    clean, target = setup
    scheme = parse_scheme("4W4A")
    on = run_attack("gc_q", clean, 0.1, seed=2, target=target, scheme=scheme, **RUN)
    net = network(target, scheme, paq=True, quantized_grad=True, clean=clean)
    g_mu = approximate_gradient(net, clean.x, clean.y)
    g_nu = approximate_gradient(net, clean.x[on.indices], clean.y[on.indices])
    expected = 0.5 * sum(((a + b) ** 2).sum() for a, b in zip(g_mu, g_nu)).item()
    assert initial(on) == pytest.approx(expected, rel=1e-4)
    assert {k: on.provenance["params"][k] for k in ("scheme", "paq", "quantized_grad")} == {
        "scheme": "4W4A",
        "paq": True,
        "quantized_grad": True,
    }


def test_quantized_grad_is_a_no_op_for_weight_only_int(setup):
    """B is all ones under the max-abs scale (documented in gc_q's docstring), but for float rounding at the grid's
    edge: w/s of a layer's largest |w| can land one rounding outside [lo, hi], and B is 0 there (measured: 1 of
    1,152 weights in one layer, with weights trained on 1 thread; none on 2). So ĝ changes the gradient of at
    most those weights, and which kernels compute the rest: the objectives agree up to float rounding (3.6e-4
    relative at 1 thread, under 1e-5 at 2, measured), while PAQ moves them by far more."""
    clean, target = setup
    scheme = parse_scheme("4W")
    qat = quantize_modules(target, scheme)
    twins = [m for m in qat.modules() if isinstance(m, Twin)]
    assert twins
    for m in twins:
        w = m.weight.detach().clone().requires_grad_()
        (b,) = torch.autograd.grad(m.weight_quantizer(w), w, torch.ones_like(w))
        edge = w.detach().abs() == w.detach().abs().max()
        assert torch.equal(b[~edge], torch.ones_like(w)[~edge])
    runs = {
        (p, q): initial(
            run_attack("gc_q", clean, 0.1, seed=2, target=target, scheme=scheme, paq=p, quantized_grad=q, **RUN)
        )
        for p in (False, True)
        for q in (False, True)
    }
    assert runs[(False, True)] == pytest.approx(runs[(False, False)], rel=2e-3)
    assert runs[(True, True)] == pytest.approx(runs[(True, False)], rel=2e-3)
    assert runs[(True, False)] != pytest.approx(runs[(False, False)], rel=2e-2)  # PAQ moves the target
