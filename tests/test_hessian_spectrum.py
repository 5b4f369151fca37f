"""The Frobenius norm and the top-k log-determinant of the loss Hessian (Tahmasebi et al. 2024's Frob-SAM and Det-SAM
measures) against the explicit Hessian of torch.autograd.functional.hessian and numpy's eigvalsh, in float64:
exactly where Hutchinson's estimator has no variance, within its standard deviation elsewhere; their draws from
the run's generator; and both through the registry as a user computes them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sharpbench
from sharpbench.kernels.flat import FlatModel
from sharpbench.measure import MeasureContext
from sharpbench_measures.curvature import hessian_trace
from sharpbench_measures.hessian_spectrum import hessian_frobenius_norm, hessian_logdet

pytestmark = pytest.mark.usefixtures("float64_default")


def squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs.squeeze(-1) - targets).pow(2).mean()


def context_for(batches: list, loss_fn=F.cross_entropy, seed: int = 0) -> MeasureContext:
    return MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed),
                          num_classes=1 if loss_fn is squared_error else 3, loss_fn=loss_fn)


def tanh_mlp_and_batches():
    """A tanh MLP (43 parameters) on two batches of unequal size: the Hessian is of the size-weighted mean loss."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    inputs, labels = torch.randn(20, 4), torch.randint(0, 3, (20,))
    return model, list(zip(inputs.split([12, 8]), labels.split([12, 8])))


def explicit_hessian(model: nn.Module, batches: list) -> torch.Tensor:
    """The Hessian of the mean cross-entropy over all points, by torch.autograd.functional.hessian."""
    flat = FlatModel.of(model)
    inputs = torch.cat([x for x, _ in batches])
    labels = torch.cat([y for _, y in batches])
    return torch.autograd.functional.hessian(lambda w: F.cross_entropy(flat.logits(w, inputs), labels), flat.w0)


def top_logdet(hessian: torch.Tensor, k: int, eps: float) -> float:
    """The definition from numpy's dense eigenvalues: sum over the k largest of log(max(lambda, 0) + eps)."""
    eigenvalues = np.linalg.eigvalsh(hessian.numpy())[::-1][:k]
    return float(np.log(np.clip(eigenvalues, 0.0, None) + eps).sum())


# --- Frobenius norm ---------------------------------------------------------------------------------------------


def test_frobenius_norm_is_exact_where_the_hessian_is_diagonal():
    """Least squares on orthogonal feature columns: H = 2 X^T X / n is diagonal, so every Rademacher probe gives
    v^T H^2 v = sum_i H_ii^2 exactly, whatever the probes and their number."""
    generator = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(36, 12, generator=generator))
    features = q * torch.linspace(0.5, 3.0, 12)          # orthogonal columns of different lengths
    targets = torch.randn(36, generator=generator)
    batches = [(features[:24], targets[:24]), (features[24:], targets[24:])]
    model = nn.Linear(12, 1, bias=False)
    hessian = 2 * features.T @ features / 36
    assert (hessian - torch.diag(hessian.diagonal())).abs().max() < 1e-12
    for probes in (1, 23):
        value = hessian_frobenius_norm(model, context_for(batches, squared_error), probes=probes)
        assert value == pytest.approx(torch.linalg.matrix_norm(hessian).item(), rel=1e-10)


class Saddle(nn.Module):
    """Two parameters (a, b), output (a, b) for every input: with `saddle_loss` the loss is a^2 - b^2."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Parameter(torch.tensor(0.3)), nn.Parameter(torch.tensor(-0.7))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.a, self.b]).expand(len(inputs), 2)


def saddle_loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (outputs[:, 0] ** 2 - outputs[:, 1] ** 2).mean()


def test_the_papers_saddle_where_the_trace_is_zero_and_the_frobenius_norm_is_not():
    """Tahmasebi et al.'s motivating example, L(a, b) = a^2 - b^2: tr(H) = 0 at every point, so trace sharpness
    cannot tell it from a flat loss, while ||H||_F = ||diag(2, -2)||_F = 2 sqrt(2) and the top eigenvalue is 2."""
    batches = [(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))]
    context = MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0),
                             num_classes=2, loss_fn=saddle_loss)
    assert hessian_trace(Saddle(), context, probes=1) == 0.0
    assert hessian_frobenius_norm(Saddle(), context, probes=1) == pytest.approx(2 * math.sqrt(2), rel=1e-12)
    assert hessian_logdet(Saddle(), context, k=1, eps=1e-6, tol=1e-12) == pytest.approx(math.log(2 + 1e-6), rel=1e-9)


def test_frobenius_norm_is_within_hutchinsons_standard_deviation_of_the_explicit_hessian():
    model, batches = tanh_mlp_and_batches()
    hessian = explicit_hessian(model, batches)
    squared = hessian @ hessian
    probes = 100
    # Rademacher probes: Var(v^T M v) = 2 sum_{i != j} M_ij^2 for M = H^2, so the mean of N has this deviation.
    std = math.sqrt(2 * (squared.square().sum() - squared.diagonal().square().sum()).item() / probes)
    exact = squared.trace().item()                       # ||H||_F^2 = tr(H^2)
    # tight enough to catch a wrong norm: tr(H)^2 is 21% below ||H||_F^2 here
    assert 4 * std < 0.11 * exact and abs(hessian.trace().item() ** 2 - exact) > 0.2 * exact
    estimates = [hessian_frobenius_norm(model, context_for(batches, seed=seed), probes=probes) ** 2
                 for seed in (0, 1)]
    assert all(abs(estimate - exact) < 4 * std for estimate in estimates)
    assert estimates[0] != estimates[1]                 # the probes come from the run's generator


def test_frobenius_norm_is_deterministic_under_the_generator_and_leaves_the_global_rng_alone():
    model, batches = tanh_mlp_and_batches()
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    first = hessian_frobenius_norm(model, context_for(batches, seed=3), probes=13)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert hessian_frobenius_norm(model, context_for(batches, seed=3), probes=13) == first


# --- log-determinant ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [5, 42])
def test_logdet_is_numpys_from_the_explicit_hessian(k):
    """k = 42 of 43 eigenvalues reaches the negative ones (the Hessian is indefinite): they count as log(eps)."""
    model, batches = tanh_mlp_and_batches()
    hessian = explicit_hessian(model, batches)
    eigenvalues = np.linalg.eigvalsh(hessian.numpy())
    assert eigenvalues[-1] > 0 and eigenvalues[0] < 0   # indefinite, so the clipping at 0 is exercised at k = 42
    value = hessian_logdet(model, context_for(batches), k=k, eps=1e-4, tol=1e-6)
    assert value == pytest.approx(top_logdet(hessian, k, 1e-4), abs=1e-6)


def test_logdet_does_not_depend_on_the_lanczos_start_and_is_deterministic():
    model, batches = tanh_mlp_and_batches()
    values = [hessian_logdet(model, context_for(batches, seed=seed), k=2) for seed in (0, 0, 1)]
    assert values[0] == values[1]
    # ARPACK stops at Ritz values within tol * |lambda|, so the sum of k logs moves by at most about k * tol
    assert values[2] == pytest.approx(values[0], abs=2 * 1e-3)


@pytest.mark.parametrize("params, message", [({"k": 0}, "k must be >= 1"), ({"k": 43}, "smaller than the number"),
                                             ({"eps": 0.0}, "eps must be > 0"), ({"tol": -1.0}, "tol must be > 0")])
def test_logdet_refuses_bad_parameters(params, message):
    model, batches = tanh_mlp_and_batches()
    with pytest.raises(ValueError, match=message):
        hessian_logdet(model, context_for(batches), **params)


def test_frobenius_norm_refuses_no_probes():
    model, batches = tanh_mlp_and_batches()
    with pytest.raises(ValueError, match="probes must be >= 1"):
        hessian_frobenius_norm(model, context_for(batches), probes=0)


# --- through the registry ----------------------------------------------------------------------------------------


def test_both_through_the_registry_as_a_user_computes_them():
    model, batches = tanh_mlp_and_batches()
    hessian = explicit_hessian(model, batches)
    frobenius = sharpbench.compute_measure("hessian-frobenius-norm", model, batches, seed=4, probes=10)
    assert frobenius == hessian_frobenius_norm(model, context_for(batches, seed=4), probes=10)
    assert frobenius > 0
    logdet = sharpbench.compute_measure("hessian-logdet", model, batches, k=3, tol=1e-6)
    assert logdet == pytest.approx(top_logdet(hessian, 3, 1e-6), abs=1e-6)   # the card's default eps
