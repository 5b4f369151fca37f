"""Fisher-normalized sharpness tr(F (F + delta I)^-2 H) against dense autograd matrices on tiny networks (cross-entropy
and squared error); its invariance, at a critical point, under a ReLU rescaling and under an invertible linear
reparametrization (where the plain Hessian trace changes); determinism; the card through the registry."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call

import sharpbench
from sharpbench.losses import mean_squared_error
from sharpbench.measure import MeasureContext
from sharpbench_measures.curvature import fisher_operator
from sharpbench_measures.fisher_sharpness import fisher_normalized_sharpness

pytestmark = pytest.mark.usefixtures("float64_default")

EXACT = 10_000      # probes >= the number of parameters: the exact trace over the standard basis


def make_batches(classes: int | None, size: int = 48, seed: int = 1):
    """One batch of `size` 2-d Gaussian inputs with random labels, or Gaussian targets where classes is None."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(size, 2, generator=generator)
    if classes is None:
        return [(inputs, torch.randn(size, generator=generator))]
    return [(inputs, torch.randint(0, classes, (size,), generator=generator))]


def context_for(batches, seed: int = 0, regression: bool = False) -> MeasureContext:
    extra = {"loss_fn": mean_squared_error} if regression else {}
    return MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed),
                          num_classes=1 if regression else 3, **extra)


def relu_mlp(seed: int = 0, hidden: int = 3, out: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, out)).eval()


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


def as_dict(model: nn.Module, vector: torch.Tensor) -> dict[str, torch.Tensor]:
    """The trainable parameters of `model` taken from the flat `vector`, by name."""
    out, start = {}, 0
    for name, p in model.named_parameters():
        if p.requires_grad:
            out[name] = vector[start:start + p.numel()].reshape(p.shape)
            start += p.numel()
    return out


def loss_of(model: nn.Module, batches, regression: bool):
    """The mean loss over the (single) batch as a function of the flat trainable parameters."""
    (inputs, labels), = batches
    criterion = mean_squared_error if regression else nn.functional.cross_entropy
    return lambda vector: criterion(functional_call(model, as_dict(model, vector), (inputs,)), labels)


def dense_matrices(model: nn.Module, batches, regression: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """H = d^2 L / dw^2 of the mean loss, and F = (1/N) sum_i J_i^T Lambda_i J_i with J_i the Jacobian of the outputs
    at point i and Lambda_i the Fisher of the predictive distribution in the outputs: diag(p) - p p^T for the softmax
    (categorical), 2 for squared error (a Gaussian of variance 1/2, whose negative log-likelihood it is)."""
    (inputs, _), = batches
    w = flat(model)
    hessian = torch.autograd.functional.hessian(loss_of(model, batches, regression), w)

    def outputs(vector: torch.Tensor) -> torch.Tensor:
        return functional_call(model, as_dict(model, vector), (inputs,))

    jacobian = torch.autograd.functional.jacobian(outputs, w)             # (N, C, P)
    if regression:
        fisher = 2 * torch.einsum("ncp,ncq->pq", jacobian, jacobian)
    else:
        p = outputs(w).softmax(-1)
        curvature = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        fisher = torch.einsum("ncp,ncd,ndq->pq", jacobian, curvature, jacobian)
    return hessian, fisher / len(inputs)


def dense_value(hessian: torch.Tensor, fisher: torch.Tensor, damping: float) -> torch.Tensor:
    """F (F + delta I)^-2 H with delta = damping * lambda_max(F), by dense solves."""
    delta = damping * torch.linalg.eigvalsh(fisher)[-1]
    damped = fisher + delta * torch.eye(len(fisher))
    return fisher @ torch.linalg.solve(damped, torch.linalg.solve(damped, hessian))


@pytest.mark.parametrize("regression", [False, True])
def test_exact_trace_equals_dense_autograd_matrices(regression):
    """With probes >= the parameter count the measure is the exact trace: it must equal tr(F (F + delta I)^-2 H)
    from autograd's dense Hessian and per-point Jacobians, for cross-entropy and for squared error."""
    model = relu_mlp(out=1 if regression else 3)
    batches = make_batches(None if regression else 3)
    context = context_for(batches, regression=regression)
    hessian, fisher = dense_matrices(model, batches, regression)
    torch.testing.assert_close(fisher_operator(model, context) @ torch.eye(len(fisher)), fisher,
                               rtol=1e-10, atol=1e-12)
    value = fisher_normalized_sharpness(model, context, damping=1e-2, probes=EXACT, tol=1e-10)
    assert value == pytest.approx(torch.trace(dense_value(hessian, fisher, 1e-2)).item(), rel=1e-7)


def test_hutchinson_estimate_is_within_its_standard_deviation_of_the_trace():
    """Fewer probes than parameters: an unbiased estimate whose standard deviation for Rademacher probes is
    sqrt(2 sum_{i != j} S_ij^2 / probes), S the symmetric part of F (F + delta I)^-2 H; it must lie within 4 of
    them (and not be the exact trace)."""
    model = relu_mlp()
    batches = make_batches(3)
    matrix = dense_value(*dense_matrices(model, batches), 1e-2)
    symmetric = (matrix + matrix.T) / 2
    probes = 10
    deviation = (2 * (symmetric.square().sum() - symmetric.diagonal().square().sum()) / probes).sqrt().item()
    exact = torch.trace(matrix).item()
    value = fisher_normalized_sharpness(model, context_for(batches), damping=1e-2, probes=probes, tol=1e-10)
    assert abs(value - exact) <= 4 * deviation
    assert value != pytest.approx(exact, rel=1e-6)


def critical_relu_regression(batches) -> nn.Module:
    """A 2-2-1 ReLU network at a critical point of its mean squared error, by Levenberg-Marquardt steps on the dense
    Hessian in float64 (with both hidden units active on part of the points, in the interior of an activation
    region, so the gradient reaches rounding level)."""
    model = relu_mlp(seed=0, hidden=2, out=1)
    loss = loss_of(model, batches, regression=True)
    damping = 1e-3
    for _ in range(80):
        w = flat(model)
        gradient = torch.autograd.functional.jacobian(loss, w)
        hessian = torch.autograd.functional.hessian(loss, w)
        while damping < 1e12:
            step = torch.linalg.solve(hessian + damping * torch.eye(len(w)), gradient)
            if loss(w - step) <= loss(w):
                damping = max(damping / 10, 1e-15)
                break
            damping *= 10
        with torch.no_grad():
            for p, value in zip(model.parameters(), as_dict(model, w - step).values()):
                p.copy_(value)
    assert torch.autograd.functional.jacobian(loss, flat(model)).abs().max() < 1e-13
    (inputs, _), = batches
    active = (model[0](inputs) > 0).double().mean(0)
    assert ((active > 0.2) & (active < 0.8)).all()      # each unit's ReLU is a kink over the data, not a line
    return model


class LinearlyReparametrized(nn.Module):
    """A copy of `base` whose weights are w = A psi: psi is the only trainable parameter, A an invertible matrix,
    psi chosen so that the network computes what `base` computes."""

    def __init__(self, base: nn.Module, matrix: torch.Tensor) -> None:
        super().__init__()
        self.base = copy.deepcopy(base).requires_grad_(False)
        self.register_buffer("matrix", matrix)
        self.psi = nn.Parameter(torch.linalg.solve(matrix, flat(base)))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        weights, start, named = self.matrix @ self.psi, 0, {}
        for name, p in self.base.named_parameters():
            named[name] = weights[start:start + p.numel()].reshape(p.shape)
            start += p.numel()
        return functional_call(self.base, named, (inputs,))


def test_invariant_at_a_critical_point_under_a_relu_rescaling_and_a_linear_reparametrization():
    """At a critical point the Hessian moves to A^T H A and the Fisher to A^T F A under a reparametrization with
    Jacobian A, so tr(F^+ H) is unchanged, while tr(H) is not. Two: the hidden layer times 3 and the next layer's
    weights divided by 3 (the same function, another point of the same network), and w = A psi for a random
    invertible A. F is singular along the rescaling symmetry, where H vanishes at the critical point; what is left
    of the damping is O(damping * cond(F)) = 1e-6."""
    batches = make_batches(None, size=12, seed=100)
    model = critical_relu_regression(batches)
    rescaled = copy.deepcopy(model)
    with torch.no_grad():
        rescaled[0].weight.mul_(3.0), rescaled[0].bias.mul_(3.0), rescaled[2].weight.div_(3.0)
    dim = flat(model).numel()
    matrix = torch.eye(dim) + torch.randn(dim, dim, generator=torch.Generator().manual_seed(3)) / dim ** 0.5
    reparametrized = LinearlyReparametrized(model, matrix).eval()
    inputs = batches[0][0]
    for twin in (rescaled, reparametrized):
        torch.testing.assert_close(twin(inputs), model(inputs))
    original, *others = (fisher_normalized_sharpness(net, context_for(batches, regression=True), damping=1e-8,
                                                     probes=EXACT, tol=1e-11)
                         for net in (model, rescaled, reparametrized))
    traces = [torch.trace(dense_matrices(net, batches, regression=True)[0]).item()
              for net in (model, rescaled, reparametrized)]
    for value, trace in zip(others, traces[1:]):
        assert value == pytest.approx(original, rel=1e-4)
        assert trace != pytest.approx(traces[0], rel=0.2)


def test_same_seed_same_value_other_seed_other_draws():
    model = relu_mlp()
    batches = make_batches(3)
    first, again, other = (fisher_normalized_sharpness(model, context_for(batches, seed=s), probes=5)
                           for s in (0, 0, 1))
    assert first == again
    assert other != first


def test_through_the_registry_as_a_user_computes_it():
    model = relu_mlp()
    batches = make_batches(3)
    value = sharpbench.compute_measure("fisher-normalized-sharpness", model, batches, seed=4, probes=5)
    assert value == fisher_normalized_sharpness(model, context_for(batches, seed=4), probes=5)


@pytest.mark.parametrize("params, message", [({"damping": 0.0}, "damping"), ({"probes": 0}, "probes"),
                                             ({"tol": 1.0}, "tol")])
def test_bad_parameters_are_value_errors(params, message):
    with pytest.raises(ValueError, match=message):
        fisher_normalized_sharpness(relu_mlp(), context_for(make_batches(3)), **params)


def test_a_zero_fisher_is_a_measure_error():
    """All weights zero and no biases: the outputs do not move with the weights to first order, F = 0."""
    model = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 3, bias=False)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    with pytest.raises(sharpbench.MeasureError, match="Fisher information is zero"):
        fisher_normalized_sharpness(model, context_for(make_batches(3)))
