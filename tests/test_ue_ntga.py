import math

import torch
import torch.nn.functional as nnf
from torch.func import jacrev, vmap
from ue_checks import accuracy_drop, check_contract, fashion_small

from qlib.attacks import run_attack
from qlib.attacks.unlearnable import ntga  # noqa: F401
from qlib.attacks.unlearnable.ntga import Surrogate
from qlib.attacks.unlearnable.ntk import _EarlyStopInverse, erf_kernels, gd_mse_weights

W2, B2, DEPTH = 1.76, 0.18, 5
FASHION = {"eps": 16 / 255, "steps": 3, "val_size": 1000}  # the cpu preset's settings
# the end-to-end statistic (tests/effects.py) needs an effect large against its spread over seeds and CPUs
END_TO_END = {**FASHION, "eps": 0.15}
SMALL = {"steps": 2, "block_size": 100, "val_size": 100}  # eps: the default 8/255


def test_contract():
    check_contract("ntga", fashion_small(200, 100)[0], "linf", 8 / 255, **SMALL)


def test_poison_makes_fashion_unlearnable(effect):
    poison = run_attack("ntga", fashion_small()[0], 1.0, seed=effect.seed, **END_TO_END)
    effect.check("ntga drop", accuracy_drop(poison, effect.seed))


def random_erf_network(d, width, g):
    dims = [d] + [width] * DEPTH
    return [(torch.randn(o, i, generator=g), torch.randn(o, generator=g)) for i, o in zip(dims, dims[1:])]


def forward(params, x):
    """The finite Erf FNN in the NTK parameterisation (stax.Dense then stax.Erf, ``DEPTH`` times)."""
    h = x
    for w, b in params:
        h = torch.erf(math.sqrt(W2 / w.shape[1]) * h @ w.T + math.sqrt(B2) * b)
    return h


def empirical_kernels(params, x, probes):
    """NNGP (1/n)·h(x)·h(x') and NTK (1/n)·Σ_k ⟨∂h_k(x)/∂θ, ∂h_k(x')/∂θ⟩ over the n output units, the latter
    estimated through random unit-variance readouts r: E_r[⟨∂(r·h)/∂θ, ∂(r·h')/∂θ⟩] equals it."""
    n = params[-1][0].shape[0]
    readout = lambda p, xi: forward(p, xi[None])[0] @ probes / math.sqrt(n)
    jac = vmap(jacrev(readout), in_dims=(None, 0))(params, x)  # per input: probes × parameters
    flat = torch.cat([j.flatten(2) for layer in jac for j in layer], 2)
    h = forward(params, x)
    return h @ h.T / n, torch.einsum("imp,jmp->ij", flat, flat) / probes.shape[1]


def test_closed_form_kernels_match_wide_random_networks():
    """The recursion against 8 random width-1024 networks (two random readouts each) on 5 inputs: measured
    error ≤ 2.5% (NNGP) and ≤ 6.5% (NTK) over generator seeds; a depth off by one, b_std² = 0 or a readout
    Dense moves the NTK by ≥ 21%."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 16, generator=g)
    nngp, ntk = 0, 0
    for _ in range(8):
        params = random_erf_network(16, 1024, g)
        k_nngp, k_ntk = empirical_kernels(params, x, torch.randn(1024, 2, generator=g))
        nngp, ntk = nngp + k_nngp.double() / 8, ntk + k_ntk.double() / 8
    exact_nngp, exact_ntk = erf_kernels(x.double(), x.double(), DEPTH, W2, B2)
    assert ((nngp - exact_nngp).abs() / exact_nngp).max() < 0.06
    assert ((ntk - exact_ntk).abs() / exact_ntk).max() < 0.10


def test_kernel_matrix_is_symmetric_psd_and_consistent():
    x = fashion_small(60, 10)[0].x.double()
    nngp, ntk = erf_kernels(x, x, DEPTH, W2, B2)
    for k in (nngp, ntk):
        assert torch.allclose(k, k.T, rtol=0, atol=1e-12)
        assert torch.linalg.eigvalsh(k).min() > -1e-10 * k.diagonal().max()
    assert torch.allclose(erf_kernels(x[:20], x[20:], DEPTH, W2, B2)[1], ntk[:20, 20:], rtol=1e-12, atol=0)


def test_predictor_is_the_gradient_flow_solution_and_differentiable():
    """A = Θ⁻¹(I − e^{−cΘ})Y against matrix_exp, c = η·t/(n·C); its backward (Daleckii–Krein) passes gradcheck,
    also at a repeated eigenvalue where autograd through eigh divides by zero."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 8, generator=g, dtype=torch.float64)
    theta = erf_kernels(x, x, DEPTH, W2, B2)[1]
    y = nnf.one_hot(torch.arange(12) % 3, 3).double()
    c = 2.0 * 50.0 / y.numel()
    expected = torch.linalg.solve(theta, (torch.eye(12, dtype=theta.dtype) - torch.linalg.matrix_exp(-c * theta)) @ y)
    assert torch.allclose(gd_mse_weights(theta, y, t=50.0, lr=2.0, diag_reg=0.0), expected, rtol=1e-8, atol=1e-12)
    sym = lambda a: _EarlyStopInverse.apply((a + a.T) / 2, 0.7)
    assert torch.autograd.gradcheck(sym, (theta[:6, :6].clone().requires_grad_(),))
    assert torch.autograd.gradcheck(sym, (torch.eye(4, dtype=torch.float64, requires_grad=True),))


def test_poison_raises_the_surrogates_validation_loss():
    """The NTK predictor trained on the poisoned block does worse on the clean validation set than trained on
    the clean block, or on the block with random ±eps noise of the same size."""
    clean = fashion_small(200, 10)[0]
    poison = run_attack("ntga", clean, 1.0, seed=0, **{**SMALL, "block_size": 200, "val_size": 200})
    surrogate = Surrogate(DEPTH, W2, B2, t=64.0, lr=1.0, diag_reg=1e-4)
    noise = 8 / 255 * torch.randint(0, 2, clean.x.shape, generator=torch.Generator().manual_seed(0)).mul(2).sub(1)
    loss = lambda x: surrogate.val_loss(x, clean.y, clean.x, clean.y, clean.num_classes, chunk=200)
    assert loss(poison.x) > loss((clean.x + noise).clamp(0, 1)) and loss(poison.x) > loss(clean.x)
    assert abs(poison.provenance["objective"]["final"] - loss(poison.x)) < 1e-4
