"""Sharpness kernels against closed forms, invariances and the constraint sets."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.optimize import brentq
from torch import nn

from sharpbench.kernels.ascent import (AscentState, WorstCaseAscent, WorstCaseConfig, apgd_checkpoints,
                                       worst_case_increase)
from sharpbench.kernels.flat import FlatModel
from sharpbench.kernels.perturb import PerturbationSet, sample_noise
from sharpbench.kernels.scaling import Scaling
from sharpbench.kernels.sharpness import average_case_sharpness, worst_case_sharpness



pytestmark = pytest.mark.usefixtures("float64_default")  # closed forms are checked in float64


def mean_output(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """A loss linear in the output: the mean logit."""
    del labels
    return logits.mean()


def linear_problem(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    model = nn.Linear(6, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 6, generator=generator))
        model.bias.fill_(0.7)
    inputs = torch.randn(32, 6, generator=generator, dtype=torch.float64)
    labels = torch.zeros(32, dtype=torch.long)
    # d loss / d (weight, bias) = (mean input, 1): the loss is linear in the parameters.
    gradient = torch.cat([inputs.mean(0), torch.ones(1)])
    weights = torch.cat([model.weight.detach().reshape(-1), model.bias.detach()])
    return model, [(inputs, labels)], gradient, weights


@pytest.mark.parametrize("adaptive", [True, False])
def test_linf_box_maximum_of_a_linear_loss_is_rho_sum_c_abs_g(adaptive):
    model, batches, gradient, weights = linear_problem()
    c = weights.abs() if adaptive else torch.ones_like(weights)
    rho = 0.05
    value = worst_case_sharpness(model, batches, rho=rho, norm="linf", adaptive=adaptive, loss_fn=mean_output)
    assert value == pytest.approx(rho * (c * gradient.abs()).sum().item(), rel=1e-5)


@pytest.mark.parametrize("adaptive", [True, False])
def test_l2_ellipsoid_maximum_of_a_linear_loss_is_rho_norm_of_c_g(adaptive):
    model, batches, gradient, weights = linear_problem(seed=1)
    c = weights.abs() if adaptive else torch.ones_like(weights)
    rho = 0.3
    value = worst_case_sharpness(model, batches, rho=rho, norm="l2", adaptive=adaptive, loss_fn=mean_output)
    assert value == pytest.approx(rho * (c * gradient).norm().item(), rel=1e-5)


class Identity(nn.Module):
    """A 'network' whose output is its parameter vector, so any function of w can serve as the loss."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.w.expand(len(inputs), -1)


def test_l2_adaptive_maximum_of_a_quadratic_matches_the_secular_equation():
    # L(w) = 1/2 sum h_i w_i^2 with w_i > 0. With delta = w * u (c = |w|), the increase is
    # sum a_i (u_i + u_i^2 / 2), a_i = h_i w_i^2, maximized over ||u|| <= rho at u_i = a_i / (2 mu - a_i),
    # with 2 mu > max a the root of ||u|| = rho (the trust-region 'easy case').
    w = torch.tensor([0.5, 1.0, 2.0, 0.25, 1.5])
    h = torch.tensor([3.0, 1.0, 0.5, 4.0, 2.0])
    rho = 0.4
    a = (h * w**2).numpy()
    mu2 = brentq(lambda s: math.sqrt(((a / (s - a)) ** 2).sum()) - rho, a.max() + 1e-12, 1e6)
    u = a / (mu2 - a)
    expected = float((a * (u + u**2 / 2)).sum())

    def quadratic(logits, labels):
        del labels
        return 0.5 * (h * logits[0] ** 2).sum()

    batches = [(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long))]
    value = worst_case_sharpness(Identity(w), batches, rho=rho, norm="l2", adaptive=True, steps=50,
                                 loss_fn=quadratic)
    assert value == pytest.approx(expected, rel=1e-4)


def test_average_case_of_a_quadratic_at_its_minimum_is_half_rho_squared_sum_h_c_squared_times_variance():
    # L(w') = 1/2 sum h_i (w'_i - w_i)^2 has its minimum at w, so the increase is 1/2 sum h_i delta_i^2.
    w = torch.tensor([0.5, -1.0, 2.0, 0.25])
    h = torch.tensor([3.0, 1.0, 0.5, 4.0])
    rho = 0.2

    def quadratic(logits, labels):
        del labels
        return 0.5 * (h * (logits[0] - w) ** 2).sum()

    batches = [(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long))]
    for norm, variance in (("l2", 1.0), ("linf", 1.0 / 3.0)):
        exact = 0.5 * rho**2 * variance * (h * w**2).sum().item()
        value = average_case_sharpness(Identity(w), batches, rho=rho, norm=norm, adaptive=True, samples=4000,
                                       loss_fn=quadratic)
        assert value == pytest.approx(exact, rel=0.05)


def small_mlp(seed: int) -> tuple[nn.Module, list]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).double().eval()
    with torch.no_grad():
        model[0].weight[0, :3] = 0.0  # exact zeros: c = 0 must pin them in the adaptive sets
    batches = [(torch.randn(24, 8), torch.randint(0, 4, (24,))) for _ in range(3)]
    return model, batches


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("adaptive", [True, False])
def test_the_best_perturbation_stays_in_its_set_and_raises_the_loss(norm, adaptive):
    model, batches = small_mlp(0)
    flat = FlatModel.of(model)
    c = Scaling(adaptive=adaptive).vector(flat)
    rho = 0.05 if norm == "linf" else 0.5
    inputs = torch.stack([x for x, _ in batches])
    labels = torch.stack([y for _, y in batches])
    shape = (len(batches), flat.w0.numel())

    def objective(w, x, y):
        return nn.functional.cross_entropy(flat.logits(w, x), y)

    increase, best = worst_case_increase(objective, flat.w0.expand(shape), c, inputs, labels,
                                         WorstCaseConfig(rho=rho, norm=norm))
    assert torch.all(PerturbationSet.of(c, rho, norm).weighted_norm(best) <= rho * (1 + 1e-9))
    assert torch.all(increase > 0)
    for row, (x, y) in enumerate(batches):
        at_best = objective(flat.w0 + best[row], x, y) - objective(flat.w0, x, y)
        assert at_best.item() == pytest.approx(increase[row].item())
    if adaptive:
        assert torch.all(best[:, c == 0] == 0)


def ascent_of(norm: str, host: bool, problems: int = 3) -> WorstCaseAscent:
    model, batches = small_mlp(0)
    flat = FlatModel.of(model)
    c = Scaling(adaptive=True).vector(flat)

    def objective(w, x, y):
        return nn.functional.cross_entropy(flat.logits(w, x), y)

    inputs = torch.stack([x for x, _ in batches[:problems]])
    labels = torch.stack([y for _, y in batches[:problems]])
    config = WorstCaseConfig(rho=0.05 if norm == "linf" else 0.5, norm=norm)
    return WorstCaseAscent(objective, flat.w0.expand(problems, -1), c, inputs, labels, config, host=host)


@pytest.mark.parametrize("problems", [1, 3])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_host_decisions_and_device_bookkeeping_give_the_same_bits(norm, problems):
    """The CPU form (branches on the host, reused buffers) and the GPU form (torch.where, fresh tensors) are
    one algorithm: equal increases and best points, bit for bit, including the checkpoints' halvings (with
    three problems, some rows improve or halve while others do not)."""
    increase_host, best_host = ascent_of(norm, host=True, problems=problems).run()
    increase_device, best_device = ascent_of(norm, host=False, problems=problems).run()
    assert torch.equal(increase_host, increase_device)
    assert torch.equal(best_host, best_device)


def test_a_state_stays_valid_after_the_ascent_moves_on():
    """advance and checkpoint write only buffers their state does not refer to: the state's iterates are
    unchanged afterwards, and the same state advanced twice gives the same iterate (the kernel benchmarks
    time one iteration this way)."""
    ascent = ascent_of("linf", host=True)
    state = ascent.advance(ascent.advance(ascent.start()))
    kept = {name: getattr(state, name).clone() for name in ("delta", "previous", "best_delta", "step_scale")}
    first = ascent.advance(state).delta.clone()
    ascent.checkpoint(state, iterations=100)  # every problem halves and restarts from its best point
    assert torch.equal(ascent.advance(state).delta, first)
    for name, value in kept.items():
        assert torch.equal(getattr(state, name), value), name


def test_no_step_writes_the_state_it_was_given_with_mixed_decisions():
    """When some problems improve (or halve) and others do not, the host form writes the picked rows into
    reused buffers: never into one the given state refers to. Every state of a whole ascent is unchanged by
    the step that follows it, and the run meets mixed improvements and mixed halvings."""
    ascent = ascent_of("linf", host=True, problems=3)
    fields = [field.name for field in dataclasses.fields(AscentState)]
    state, mixed_improvements, mixed_halvings, last_checkpoint = ascent.start(), 0, 0, 0
    for i in range(ascent.config.steps):
        for step in ("advance", "checkpoint"):
            if step == "checkpoint" and i not in apgd_checkpoints(ascent.config.steps):
                continue
            before = {name: getattr(state, name).clone() for name in fields}
            if step == "advance":
                new = ascent.advance(state)
                flags = (new.loss > state.best_loss).tolist()
                mixed_improvements += any(flags) and not all(flags)
            else:
                new = ascent.checkpoint(state, i - last_checkpoint)
                last_checkpoint = i
                flags = (new.step_size < state.step_size).view(-1).tolist()
                mixed_halvings += any(flags) and not all(flags)
            for name in fields:
                assert torch.equal(getattr(state, name), before[name]), (i, step, name)
            state = new
    assert mixed_improvements > 0 and mixed_halvings > 0


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(-10, 10), min_size=1, max_size=12),
    scales=st.lists(st.sampled_from([0.0, 0.1, 1.0, 3.0]), min_size=12, max_size=12),
    rho=st.floats(1e-3, 5.0),
    norm=st.sampled_from(["linf", "l2"]),
)
def test_projection_lands_in_the_set_and_is_idempotent(values, scales, rho, norm):
    z = torch.tensor(values)
    c = torch.tensor(scales[: len(values)])
    perturbation_set = PerturbationSet.of(c, rho, norm)
    projected = perturbation_set.project(z)
    assert perturbation_set.weighted_norm(projected) <= rho * (1 + 1e-9)
    assert torch.all(projected[c == 0] == 0)
    assert torch.allclose(perturbation_set.project(projected), projected, rtol=1e-12, atol=1e-12)
    if perturbation_set.weighted_norm(z) <= rho:
        assert torch.equal(projected, z)


def rescaled(model: nn.Module, factor: float) -> nn.Module:
    """Multiply the first layer's incoming weights and bias by factor and divide the next layer's weights:
    the ReLU network computes the same function."""
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin[0].weight.mul_(factor)
        twin[0].bias.mul_(factor)
        twin[2].weight.div_(factor)
    return twin


MEASURES = [
    (worst_case_sharpness, dict(norm="linf", rho=0.01)),
    (worst_case_sharpness, dict(norm="l2", rho=0.3)),
    (average_case_sharpness, dict(norm="linf", rho=0.1)),
    (average_case_sharpness, dict(norm="l2", rho=0.1)),
]


@pytest.mark.parametrize("measure,params", MEASURES)
def test_adaptive_sharpness_is_invariant_to_relu_rescaling_and_standard_is_not(measure, params):
    model, batches = small_mlp(1)
    twin = rescaled(model, 7.0)
    x = batches[0][0]
    assert torch.allclose(model(x), twin(x), rtol=1e-12)
    original = measure(model, batches, adaptive=True, **params)
    assert measure(twin, batches, adaptive=True, **params) == pytest.approx(original, rel=1e-6)
    standard = measure(model, batches, adaptive=False, **params)
    assert measure(twin, batches, adaptive=False, **params) != pytest.approx(standard, rel=0.05)


def test_normalized_logits_make_adaptive_sharpness_invariant_to_the_output_scale():
    model, batches = small_mlp(2)
    louder = copy.deepcopy(model)
    with torch.no_grad():
        louder[2].weight.mul_(5.0)
        louder[2].bias.mul_(5.0)
    normalized = worst_case_sharpness(model, batches, rho=0.01, normalize_logits=True)
    assert worst_case_sharpness(louder, batches, rho=0.01, normalize_logits=True) == pytest.approx(normalized, rel=1e-6)
    plain = worst_case_sharpness(model, batches, rho=0.01)
    assert worst_case_sharpness(louder, batches, rho=0.01) != pytest.approx(plain, rel=0.05)


def test_apgd_checkpoints_for_twenty_steps_are_the_studys():
    assert sorted(apgd_checkpoints(20)) == [5, 9, 12, 15, 16, 18, 19]


def test_each_batch_gets_its_own_maximizer_and_the_value_is_their_mean():
    model, batches = small_mlp(3)
    together = worst_case_sharpness(model, batches, rho=0.02)
    alone = [worst_case_sharpness(model, [batch], rho=0.02) for batch in batches]
    assert together == pytest.approx(sum(alone) / len(alone), rel=1e-12)


def test_the_kernels_do_not_touch_the_model():
    model, batches = small_mlp(4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    worst_case_sharpness(model, batches, rho=0.05, norm="l2")
    average_case_sharpness(model, batches, rho=0.1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_noise_drawn_into_a_buffer_equals_noise_drawn_alone(norm):
    """The average case draws into reused buffers wider than c (a stack's carried buffers): the same numbers,
    in the same order, as fresh rows, and the extra columns untouched."""
    c = torch.rand(7, dtype=torch.float64)
    alone = sample_noise(c, norm, torch.Generator().manual_seed(5), samples=3)
    buffer = torch.full((3, 9), 42.0, dtype=torch.float64)
    into = sample_noise(c, norm, torch.Generator().manual_seed(5), samples=3, out=buffer)
    assert into is buffer
    assert torch.equal(buffer[:, :7], alone)
    assert torch.all(buffer[:, 7:] == 42.0)
