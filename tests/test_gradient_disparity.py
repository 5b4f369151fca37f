"""Gradient disparity against its closed form on a linear model under squared error (the plain mean loss and the
authors' re-scaled loss), its pairs, its draws from the generator, and through the registry as a user computes it."""

from __future__ import annotations

import itertools

import pytest
import torch
from sharpbench_measures.gradient_disparity import gradient_disparity
from torch import nn

import sharpbench
from sharpbench.losses import cross_entropy
from sharpbench.measure import MeasureContext
from tiny_nets import relu_net_and_batches

pytestmark = pytest.mark.usefixtures("float64_default")


def squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs.squeeze(-1) - targets).pow(2).mean()


def linear_regression(batches: int = 4):
    """A linear model without bias and a few batches of 10 points: each batch's loss is ||X w - y||^2 / m."""
    torch.manual_seed(0)
    model = nn.Linear(5, 1, bias=False)
    generator = torch.Generator().manual_seed(1)
    data = [(torch.randn(10, 5, generator=generator), torch.randn(10, generator=generator)) for _ in range(batches)]
    return model, data


def context_of(batches, loss_fn=squared_error, seed: int = 0) -> MeasureContext:
    return MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed),
                          num_classes=1, loss_fn=loss_fn)


def closed_form_gradient(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, rescale: bool) -> torch.Tensor:
    """r = X w - y, l_k = r_k^2, grad l_k = 2 r_k x_k. Plain: grad mean(l) = 2 X^T r / m. Re-scaled, mean(l) / std(l)
    by the quotient rule, with grad std(l) = sum_k (l_k - mean(l)) grad l_k / ((m - 1) std(l))."""
    residual = x @ w - y
    per_example = 2 * residual[:, None] * x
    mean_gradient = per_example.mean(dim=0)
    if not rescale:
        return mean_gradient
    losses = residual ** 2
    mean, std = losses.mean(), losses.std()
    std_gradient = ((losses - mean)[:, None] * per_example).sum(dim=0) / ((len(y) - 1) * std)
    return mean_gradient / std - mean * std_gradient / std ** 2


def closed_form(w: torch.Tensor, batches, rescale: bool) -> float:
    """The mean of ||g_i - g_j||_2 over the unordered pairs i < j, written out pair by pair."""
    gradients = [closed_form_gradient(w, x, y, rescale) for x, y in batches]
    distances = [(gradients[i] - gradients[j]).norm() for i, j in itertools.combinations(range(len(batches)), 2)]
    assert len(distances) == len(batches) * (len(batches) - 1) // 2
    return float(torch.stack(distances).mean())


@pytest.mark.parametrize("rescale", [False, True])
def test_gradient_disparity_is_the_closed_form_on_a_linear_model(rescale):
    model, batches = linear_regression()
    value = gradient_disparity(model, context_of(batches), rescale=rescale)
    assert value == pytest.approx(closed_form(model.weight.detach().reshape(-1), batches, rescale), rel=1e-10)
    assert value > 0


def test_the_pairs_are_unordered_and_every_one_counts_once():
    """The value does not depend on the batches' order, and two equal batches add a zero distance to the mean."""
    model, batches = linear_regression(3)
    value = gradient_disparity(model, context_of(batches), rescale=False)
    assert gradient_disparity(model, context_of(batches[::-1]), rescale=False) == pytest.approx(value, rel=1e-12)
    # with a copy of batch 0: the 3 pairs become 6, of which the copy's pair with batch 0 is 0 and its pairs with
    # batches 1 and 2 repeat batch 0's, so the sum is the old sum plus D_01 + D_02 over 6 pairs
    w = model.weight.detach().reshape(-1)
    g = [closed_form_gradient(w, x, y, False) for x, y in batches]
    expected = (3 * value + (g[0] - g[1]).norm() + (g[0] - g[2]).norm()) / 6
    doubled = gradient_disparity(model, context_of([batches[0], *batches]), rescale=False)
    assert doubled == pytest.approx(float(expected), rel=1e-10)


def test_a_drawn_subset_is_seeded_and_all_batches_need_no_seed():
    model, batches = linear_regression(6)
    w = model.weight.detach().reshape(-1)
    by_seed = {seed: gradient_disparity(model, context_of(batches, seed=seed), s=2, rescale=False) for seed in range(8)}
    assert gradient_disparity(model, context_of(batches, seed=3), s=2, rescale=False) == by_seed[3]
    assert len(set(by_seed.values())) > 1                      # the generator chooses the pair
    pairs = {float(closed_form(w, [batches[i], batches[j]], False)) for i, j in itertools.combinations(range(6), 2)}
    assert all(any(value == pytest.approx(pair, rel=1e-10) for pair in pairs) for value in by_seed.values())
    everything = {gradient_disparity(model, context_of(batches, seed=seed)) for seed in (0, 1)}
    assert len(everything) == 1
    assert gradient_disparity(model, context_of(batches, seed=5), s=6) == everything.pop()   # s = all batches


def test_the_rescaled_loss_removes_the_loss_scale_that_the_plain_one_keeps():
    model, batches = linear_regression()
    scaled = lambda outputs, targets: 3.0 * squared_error(outputs, targets)
    assert gradient_disparity(model, context_of(batches, scaled)) == pytest.approx(
        gradient_disparity(model, context_of(batches)), rel=1e-10)
    assert gradient_disparity(model, context_of(batches, scaled), rescale=False) == pytest.approx(
        3.0 * gradient_disparity(model, context_of(batches), rescale=False), rel=1e-10)


def test_bad_parameters_and_a_single_batch_are_refused():
    model, batches = linear_regression(3)
    with pytest.raises(ValueError, match="at least 2"):
        gradient_disparity(model, context_of(batches), s=1)
    with pytest.raises(ValueError, match="only 3"):
        gradient_disparity(model, context_of(batches), s=4)
    with pytest.raises(NotImplementedError, match="two batches"):
        gradient_disparity(model, context_of(batches[:1]))
    single_points = [(x[:1], y[:1]) for x, y in batches]
    with pytest.raises(ValueError, match="rescale=false"):
        gradient_disparity(model, context_of(single_points))
    assert gradient_disparity(model, context_of(single_points), rescale=False) > 0


def test_through_the_registry_it_reads_the_model_and_is_not_rescaling_invariant():
    """The card's value is the function's, the weights are left as they were, and a ReLU rescaling (first layer times
    4, the next divided by 4: the same function) changes it, as the gradients of the layers scale by 1/4 and 4."""
    model, batches = relu_net_and_batches()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    value = sharpbench.compute_measure("gradient-disparity", model, batches, seed=0)
    context = MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0),
                             num_classes=3)
    assert value == pytest.approx(gradient_disparity(model, context), rel=1e-12)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert sharpbench.compute_measure("gradient-disparity", model, batches, seed=1, s=2) == \
        sharpbench.compute_measure("gradient-disparity", model, batches, seed=1, s=2)

    twin = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():
        twin[0].weight.mul_(4.0), twin[0].bias.mul_(4.0), twin[2].weight.div_(4.0)
    assert torch.allclose(twin(batches[0][0]), model(batches[0][0]))
    assert sharpbench.compute_measure("gradient-disparity", twin, batches) != pytest.approx(value, rel=1e-3)


def test_the_built_in_losses_per_example_form_gives_the_sliced_losses_value():
    """The collections' cross-entropy takes its per-example form; any other mean loss is taken on one-example slices."""
    model, batches = relu_net_and_batches()
    wrapped = lambda logits, labels: cross_entropy(logits, labels)
    fast = gradient_disparity(model, context_of(batches, cross_entropy))
    assert gradient_disparity(model, context_of(batches, wrapped)) == pytest.approx(fast, rel=1e-10)
