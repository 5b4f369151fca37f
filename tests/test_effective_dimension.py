"""Effective dimensionality of the loss Hessian (Maddox et al., 2020) against the eigenvalues of an explicit Hessian
(torch.autograd.functional.hessian, numpy eigvalsh) on a tiny network, on ARPACK's path and the dense one; against
its closed form on a quadratic loss with a Hessian of known spectrum; deterministic for a seed; through the
registry as a user computes it, for a classifier and a regression model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sharpbench
from sharpbench import FlatModel, MeasureContext
from sharpbench.cards.discovery import Registry
from sharpbench.losses import mean_squared_error
from sharpbench_measures.effective_dimension import effective_dimension, effective_dimensionality

pytestmark = pytest.mark.usefixtures("float64_default")


def tanh_mlp_and_batches():
    """A tanh MLP (51 parameters) on batches of unequal size, at its random initialization, where its Hessian has
    negative eigenvalues."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    inputs, labels = torch.randn(20, 4), torch.randint(0, 3, (20,))
    return model, list(zip(inputs.split([8, 8, 4]), labels.split([8, 8, 4])))


def explicit_eigenvalues(model: nn.Module, batches: list) -> np.ndarray:
    """The eigenvalues of the Hessian of the mean cross-entropy over all points, largest first."""
    flat = FlatModel.of(model)
    inputs, labels = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
    hessian = torch.autograd.functional.hessian(lambda w: F.cross_entropy(flat.logits(w, inputs), labels), flat.w0)
    return np.sort(np.linalg.eigvalsh(hessian.numpy()))[::-1]


def context(batches: list, loss_fn=F.cross_entropy, seed: int = 0) -> MeasureContext:
    return MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed),
                          num_classes=3, loss_fn=loss_fn)


@pytest.mark.parametrize("z", [1.0, 0.05])
def test_is_exact_once_the_krylov_space_holds_every_eigenvalue(z):
    """With k at least the 51 parameters, Lanczos closes its Krylov space and its Ritz values are the Hessian's
    distinct eigenvalues (the null space's multiple zero counts once, and zero counts 0)."""
    model, batches = tanh_mlp_and_batches()
    eigenvalues = explicit_eigenvalues(model, batches)
    assert eigenvalues[0] > z / 10 and eigenvalues[-1] < -1e-3  # both ends matter here
    top = np.clip(eigenvalues, 0, None)
    expected = float(np.sum(top / (top + z)))
    assert effective_dimension(model, context(batches), z=z, k=100) == pytest.approx(expected, rel=1e-8)


def test_negative_eigenvalues_count_zero():
    """With all 51 eigenvalues, the raw sum would differ: its negative terms are left out, none is negative."""
    model, batches = tanh_mlp_and_batches()
    eigenvalues = explicit_eigenvalues(model, batches)
    raw = float(np.sum(eigenvalues / (eigenvalues + 1.0)))
    value = effective_dimension(model, context(batches), z=1.0, k=100)
    assert value > raw
    assert effective_dimensionality(np.array([-0.5, -2.0, 0.0]), 1.0) == 0.0


def quadratic_with_spectrum(spectrum: np.ndarray, n: int = 60):
    """A bias-free linear model under squared error, L(w) = ||X w - y||^2 / n, whose Hessian 2 X^T X / n has exactly
    the eigenvalues `spectrum`: X = Q diag(sqrt(n spectrum / 2)) V^T with Q, V orthonormal."""
    generator = torch.Generator().manual_seed(5)
    d = len(spectrum)
    q, _ = torch.linalg.qr(torch.randn(n, d, generator=generator))
    v, _ = torch.linalg.qr(torch.randn(d, d, generator=generator))
    x = q @ torch.diag(torch.as_tensor(np.sqrt(n * spectrum / 2))) @ v.T
    y = torch.randn(n, generator=generator)
    torch.manual_seed(6)
    return nn.Linear(d, 1, bias=False), list(zip(x.split(20), y.split(20)))


def test_on_a_quadratic_loss_exact_at_full_size_and_below_the_top_k_before():
    """On a quadratic loss the Hessian is constant. With k = 30 (its size) N_eff is the closed form over its
    spectrum; with fewer steps the i-th largest Ritz value is at most the i-th largest eigenvalue and grows with k
    (Cauchy interlacing), so N_eff is below the top-k closed form and grows with k (through the card, with the
    regression loss of diag-linear-nets)."""
    spectrum = 20.0 * 0.6 ** np.arange(30)
    model, batches = quadratic_with_spectrum(spectrum)
    spec = Registry.discover().measure("effective-dimension")

    def closed_form(k: int) -> float:
        return float(np.sum(spectrum[:k] / (spectrum[:k] + 0.5)))

    values = {k: spec.call(model, context(batches, loss_fn=mean_squared_error), {"z": 0.5, "k": k})
              for k in (4, 8, 12, 30)}
    assert values[30] == pytest.approx(closed_form(30), rel=1e-8)
    for k in (4, 8, 12):
        assert values[k] < closed_form(k)
    assert values[4] < values[8] < values[12] < values[30]


def test_is_deterministic_for_a_seed_and_independent_of_it_once_exact():
    """Three steps depend on the start vector (a seed is its own value, another seed another); 100 steps close
    the Krylov space of the 51-parameter network and every start vector gives the same value."""
    model, batches = tanh_mlp_and_batches()

    def value(seed: int, k: int) -> float:
        return sharpbench.compute_measure("effective-dimension", model, batches, seed=seed, k=k, z=0.01)

    assert value(3, 3) == value(3, 3) != value(4, 3)
    assert value(3, 100) == pytest.approx(value(4, 100), rel=1e-8)


def test_through_the_registry_with_the_cards_defaults_and_its_parameter_checks():
    model, batches = tanh_mlp_and_batches()
    spec = Registry.discover().measure("effective-dimension")
    assert spec.higher_means == "worse" and spec.bind() == {"z": 1.0, "k": 100}
    value = sharpbench.compute_measure("effective-dimension", model, batches)
    assert value == pytest.approx(effective_dimension(model, context(batches), z=1.0, k=100), rel=1e-12)
    for bad, message in (({"z": 0.0}, "z must be > 0"), ({"k": 0}, "k must be >= 1")):
        with pytest.raises(ValueError, match=message):
            effective_dimension(model, context(batches), **bad)
