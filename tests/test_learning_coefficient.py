"""The LLC estimate against its closed form on a regular model (linear regression, lambda = d/2), its determinism
under the run's generator, that it leaves the model as it found it, and through the registry as a user computes it."""

from __future__ import annotations

import math

import pytest
import torch
from sharpbench_measures.learning_coefficient import (
    llc_per_chain,
    local_learning_coefficient,
)
from torch import nn

import sharpbench
from sharpbench.measure import MeasureContext
from tiny_nets import relu_net_and_batches

pytestmark = pytest.mark.usefixtures("float64_default", "one_thread")

@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for these tiny models (a second thread only adds contention), restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


D, BATCHES, M = 200, 4, 256         # parameters, batches, points per batch: n = 1024


def squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs.squeeze(-1) - targets).pow(2).mean()


def orthogonal_regression(residual: float = 0.5):
    """y = X w* + r on every batch b with X_b^T X_b = m I and r_b orthogonal to X_b's columns, |r_b| the same:
    every batch loss is L_b(w) = L_n(w*) + |w - w*|^2 exactly, so SGLD on the minibatches is the Gaussian AR(1)
    chain w' - w* = rho (w - w*) + sqrt(epsilon) xi with rho = 1 - epsilon (2 n beta + gamma) / 2."""
    generator = torch.Generator().manual_seed(3)
    w_star = torch.randn(D, generator=generator)
    batches = []
    for _ in range(BATCHES):
        q, _ = torch.linalg.qr(torch.randn(M, D + 1, generator=generator))
        x = math.sqrt(M) * q[:, :D]
        batches.append((x, x @ w_star + residual * math.sqrt(M) * q[:, D]))
    model = nn.Linear(D, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(w_star[None])
    return model, batches


def expected_estimate(n: int, epsilon: float, gamma: float, burnin: int, draws: int) -> float:
    """E[lambda_hat] for the chain above, exactly: E|w_t - w*|^2 = D epsilon (1 - rho^(2t)) / (1 - rho^2), so
    E[lambda_hat] = n beta mean_{burnin <= t < burnin + draws} D epsilon (1 - rho^(2t)) / (1 - rho^2). Its limit
    for epsilon -> 0 and t -> infinity is (D/2) 2 n beta / (2 n beta + gamma), and D/2 as gamma -> 0."""
    nbeta = n / math.log(n)
    rho = 1 - epsilon * (2 * nbeta + gamma) / 2
    variances = [D * epsilon * (1 - rho ** (2 * t)) / (1 - rho ** 2) for t in range(burnin, burnin + draws)]
    return nbeta * sum(variances) / draws


def regression_context(batches, seed: int = 0) -> MeasureContext:
    return MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed),
                          num_classes=1, loss_fn=squared_error)


def test_regular_model_estimate_is_d_over_2_within_its_monte_carlo_error():
    model, batches = orthogonal_regression()
    n, settings = BATCHES * M, {"epsilon": 2.5e-4, "gamma": 1.0, "burnin": 100, "draws": 150}
    chains = llc_per_chain(model, regression_context(batches), chains=8, **settings)
    mean, standard_error = chains.mean().item(), (chains.std() / math.sqrt(len(chains))).item()
    expected = expected_estimate(n, **settings)
    # the estimator's own expectation (step-size bias and burn-in included) is within 2% of lambda = D/2 here
    assert expected == pytest.approx(D / 2, rel=0.02)
    assert abs(mean - expected) <= 4 * standard_error
    assert abs(mean - D / 2) <= 4 * standard_error + abs(expected - D / 2)
    assert standard_error < 0.05 * D / 2      # the check has teeth: 4 standard errors are under a fifth of D/2


def test_the_step_size_bias_is_the_closed_forms():
    """A step 8 times larger raises the estimate by the factor the closed form predicts (1 / (1 - epsilon a / 4))."""
    model, batches = orthogonal_regression()
    n, settings = BATCHES * M, {"epsilon": 4e-3, "gamma": 1.0, "burnin": 20, "draws": 100}
    chains = llc_per_chain(model, regression_context(batches), chains=8, **settings)
    expected = expected_estimate(n, **settings)
    assert expected > 1.2 * D / 2
    assert abs(chains.mean().item() - expected) <= 4 * (chains.std() / math.sqrt(len(chains))).item()


SMALL = {"chains": 2, "draws": 20, "burnin": 10}


def test_determinism_under_the_generator_and_no_global_random_state():
    model, batches = relu_net_and_batches()

    def context(seed: int) -> MeasureContext:
        return MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed),
                              num_classes=3)

    global_state = torch.get_rng_state()
    first, again = (local_learning_coefficient(model, context(5), **SMALL) for _ in range(2))
    other = local_learning_coefficient(model, context(6), **SMALL)
    assert first == again
    assert first != other
    assert torch.equal(torch.get_rng_state(), global_state)


def test_weights_buffers_and_modes_are_unchanged_on_a_batchnorm_network():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    model.eval()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 1, 8, 8, generator=generator), torch.randint(0, 3, (8,), generator=generator))
               for _ in range(2)]
    context = MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0),
                             num_classes=3)
    value = local_learning_coefficient(model, context, **SMALL)
    assert math.isfinite(value)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert not any(module.training for module in model.modules())


def test_through_the_registry_as_a_user_computes_it():
    model, batches = relu_net_and_batches()
    value = sharpbench.compute_measure("local-learning-coefficient", model, batches, seed=4, **SMALL)
    context = MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator().manual_seed(4),
                             num_classes=3)
    assert value == local_learning_coefficient(model, context, **SMALL)
    assert value > 0


@pytest.mark.parametrize("bad, message", [
    ({"epsilon": 0.0}, "epsilon"), ({"epsilon": math.inf}, "epsilon"), ({"gamma": -1.0}, "gamma"),
    ({"chains": 0}, "chains"), ({"draws": 0}, "draws"), ({"burnin": -1}, "burnin"),
])
def test_bad_parameters_are_named(bad, message):
    model, batches = relu_net_and_batches()
    context = MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator(), num_classes=3)
    with pytest.raises(ValueError, match=message):
        local_learning_coefficient(model, context, **{**SMALL, **bad})


def test_a_diverging_chain_is_an_error_naming_the_step_size():
    model, batches = orthogonal_regression()
    with pytest.raises(RuntimeError, match="epsilon"):
        local_learning_coefficient(model, regression_context(batches), epsilon=1.0, gamma=1.0, chains=1, draws=200,
                                   burnin=0)
