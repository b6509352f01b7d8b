"""GC-Q's switches: both off is GC; both on is eq. (5); and what the ĝ switch does (and does not) change."""

import pytest
import torch

from conftest import toy_dataset
from qlib.attacks import run_attack
from qlib.attacks.gc import clean_gradient, gradient_parameters
from qlib.attacks.gc_q import network
from qlib.models import create_model
from qlib.quant import approximate_gradient, parse_scheme
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
    off = run_attack("gc_q", clean, 0.1, seed=2, target=target, scheme=parse_scheme("4W"), paq=False,
                     quantized_grad=False, **RUN)
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
        "scheme": "4W4A", "paq": True, "quantized_grad": True}


def test_quantized_grad_is_a_no_op_for_weight_only_int(setup):
    """B is all ones under the max-abs scale: documented in gc_q's docstring, checked here."""
    clean, target = setup
    scheme = parse_scheme("4W")
    runs = {(p, q): initial(run_attack("gc_q", clean, 0.1, seed=2, target=target, scheme=scheme, paq=p, quantized_grad=q, **RUN))
            for p in (False, True) for q in (False, True)}
    assert runs[(False, True)] == pytest.approx(runs[(False, False)], rel=1e-5)
    assert runs[(True, True)] == pytest.approx(runs[(True, False)], rel=1e-5)
    assert runs[(True, False)] != pytest.approx(runs[(False, False)], rel=1e-3)  # PAQ moves the target


def test_quantized_grad_matters_for_bnn_pp(setup):
    clean, target = setup
    scheme = parse_scheme("1W", "bnn++")
    plain = run_attack("gc_q", clean, 0.1, seed=2, target=target, scheme=scheme, quantized_grad=False, **RUN)
    quant = run_attack("gc_q", clean, 0.1, seed=2, target=target, scheme=scheme, quantized_grad=True, **RUN)
    assert initial(plain) != pytest.approx(initial(quant), rel=1e-3)


def test_gc_q_needs_a_quantized_scheme(setup):
    clean, target = setup
    with pytest.raises(ValueError, match="use GC"):
        run_attack("gc_q", clean, 0.1, seed=0, target=target, scheme=parse_scheme("fp"), **RUN)


def test_quantized_grad_matters_for_bnn_weights(setup):
    """BNN's F = α·sign(w) passes α·1_[−1,1](w) ⊙ ∇ back, so ĝ reweights each layer by α: Table 4 computes
    its 1-bit ĝ cells, while at 4 and 8 bits it shares them (qlib.experiments.ablation.attack_of)."""
    clean, target = setup
    scheme = parse_scheme("1W", "bnn")
    runs = {q: initial(run_attack("gc_q", clean, 0.1, seed=2, target=target, scheme=scheme, paq=True, quantized_grad=q, **RUN))
            for q in (False, True)}
    assert runs[True] != pytest.approx(runs[False], rel=1e-2)
