"""TGDA's total derivative against finite differences of the exactly retrained model, and the TGDA loops."""

import pytest
import torch
import torch.nn.functional as nnf
from conftest import blobs, exact_logistic_regression, toy_dataset

from qlib.attacks import run_attack
from qlib.attacks.tgda import conjugate_gradient, total_derivative
from qlib.models import create_model
from qlib.quant import parse_scheme


def test_conjugate_gradient_solves_a_spd_system():
    A = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    b = [torch.tensor([1.0, 2.0], dtype=torch.float64)]
    (x,) = conjugate_gradient(lambda v: [A @ v[0]], b, iters=10)
    assert torch.allclose(A @ x, b[0])


def test_total_derivative_matches_finite_differences():
    data, val = blobs(n=90, seed=0), blobs(n=60, seed=1)
    tx, ty, vx, vy = data.x.double(), data.y, val.x.double(), val.y
    px, py = data.x[:9].double().clone() * 0.8 + 0.1, data.y[:9]  # poisons away from the [0, 1] border

    def val_loss(poison_x):
        w = exact_logistic_regression(torch.cat([tx, poison_x]), torch.cat([ty, py]))
        with torch.no_grad():
            return nnf.cross_entropy(w(vx), vy).item()

    model = exact_logistic_regression(torch.cat([tx, px]), torch.cat([ty, py]))
    d = total_derivative(model, px, py, tx, ty, vx, vy, cg_iters=200)
    h = 1e-4
    for i, j in [(0, 0), (3, 2), (8, 3), (5, 1)]:
        e = torch.zeros_like(px)
        e.view(9, -1)[i, j] = h
        fd = (val_loss(px + e) - val_loss(px - e)) / (2 * h)
        assert d.view(9, -1)[i, j].item() == pytest.approx(fd, rel=1e-3, abs=1e-7)


@pytest.fixture(scope="module")
def surrogate():
    clean = toy_dataset(n=120, size=28)
    return clean, create_model("cnn", clean, width=0.25, seed=0).eval()


RUN = {"epochs": 2, "follower_steps": 2, "batch_size": 40, "cg_iters": 3, "device": "cpu"}


def test_tgda_is_deterministic_in_range_and_leaves_the_model_alone(surrogate):
    clean, model = surrogate
    before = [p.clone() for p in model.parameters()]
    a = run_attack("tgda", clean, 0.1, seed=1, model=model, **RUN)
    b = run_attack("tgda", clean, 0.1, seed=1, model=model, **RUN)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, clean.x[a.indices])
    assert a.x.min() >= 0 and a.x.max() <= 1 and len(a) == 12
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))
    assert set(a.provenance["validation_loss"]) == {"first", "last"}


def test_tgda_q_runs_through_the_quantized_network(surrogate):
    clean, model = surrogate
    q = run_attack("tgda_q", clean, 0.1, seed=1, model=model, scheme=parse_scheme("4W4A"), **RUN)
    fp = run_attack("tgda", clean, 0.1, seed=1, model=model, **RUN)
    assert q.provenance["params"]["scheme"] == "4W4A" and not torch.equal(q.x, fp.x)
    with pytest.raises(ValueError, match="use TGDA"):
        run_attack("tgda_q", clean, 0.1, seed=1, model=model, scheme=parse_scheme("fp"), **RUN)


def test_leader_steps_adam_in_pixel_units_or_plain_gradient(surrogate):
    clean, model = surrogate
    one = {**RUN, "epochs": 1, "follower_steps": 0, "leader_lr": 0.02}
    adam = run_attack("tgda", clean, 0.1, seed=1, model=model, **one)
    dx = (adam.x - clean.x[adam.indices]).abs()
    inside = (clean.x[adam.indices] > 0.02) & (clean.x[adam.indices] < 0.98) & (dx > 0)
    # Adam's first step is leader_lr · g / (|g| + 1e-8): leader_lr wherever the derivative is not tiny, never more
    assert inside.sum() > 100 and dx.max() <= 0.02 * (1 + 1e-5)
    assert ((dx[inside] - 0.02).abs() < 2e-4).float().mean() > 0.9
    gd = run_attack("tgda", clean, 0.1, seed=1, model=model, **{**one, "leader_optimizer": "gd"})
    assert gd.provenance["params"]["leader_optimizer"] == "gd" and not torch.equal(gd.x, adam.x)
    # plain ascent moves each pixel by leader_lr · D_ν ℓ₁: the sign agrees with Adam's step
    moved = (gd.x - clean.x[gd.indices]) != 0
    assert torch.equal(
        torch.sign(gd.x - clean.x[gd.indices])[moved & inside],
        torch.sign(adam.x - clean.x[adam.indices])[moved & inside],
    )


@pytest.mark.parametrize(
    "bad", [{"val_fraction": 1.0}, {"epochs": 0}, {"leader_lr": 0}, {"damping": -1.0}, {"leader_optimizer": "sgd"}]
)
def test_tgda_bad_arguments(surrogate, bad):
    clean, model = surrogate
    with pytest.raises(ValueError):
        run_attack("tgda", clean, 0.1, seed=1, model=model, **{**RUN, **bad})


def test_chunked_total_derivative_and_follower_step_equal_the_single_graph():
    """Bounded memory changes nothing but float summation order: pieces of 8 images against one graph."""
    from qlib.attacks.tgda import follower_step

    d = toy_dataset(100, channels=3, size=8)
    model = create_model("cnn", d, 0.25, 0).eval()
    x, y, tx, ty, vx, vy = d.x[:40], d.y[:40], d.x[40:85], d.y[40:85], d.x[85:], d.y[85:]
    whole = total_derivative(model, x, y, tx, ty, vx, vy, 3, 0.0, None)
    chunked = total_derivative(model, x, y, tx, ty, vx, vy, 3, 0.0, 8)
    assert whole.abs().max() > 0
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-4 * whole.abs().max().item())
    states = []
    for chunk in (None, 8):
        m = create_model("cnn", d, 0.25, 0).eval()
        follower_step(m, list(m.parameters()), tx, ty, x, y, 0.1, chunk)
        states.append(m.state_dict())
    for k in states[0]:
        torch.testing.assert_close(states[1][k], states[0][k])


def test_tgda_units_count_the_images_of_every_leader_step(surrogate):
    from qlib.counters import UNITS, counting

    clean, model = surrogate
    params = {"epochs": 2, "follower_steps": 1, "cg_iters": 1, "batch_size": 40, "chunk": 16}
    with counting() as ran:
        run_attack("tgda", clean, 0.1, 0, model=model, device="cpu", **params)
    assert ran["attack/tgda"] == UNITS.get("tgda")(len(clean), 0.1, params) == 2 * (40 - 12 + 12)
