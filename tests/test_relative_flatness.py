"""Relative flatness against an explicit Hessian of the head's weights (torch.autograd.functional.hessian through the
whole network, float64), on an MLP under cross-entropy and under squared error and on the BatchNorm CNN, timm ViT
and BERT of `sharpbench measure check`; its invariances under function-preserving rescalings; and through the
registry as a user computes it."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call

import sharpbench
from sharpbench.evaluation.check_models import ARCHITECTURES, check_batches
from sharpbench.losses import cross_entropy, mean_squared_error
from sharpbench.measure import MeasureContext
from sharpbench.models.diagonal import DiagonalLinearNet
from sharpbench.models.registry import build_model
from sharpbench_measures.relative_flatness import relative_flatness

pytestmark = pytest.mark.usefixtures("float64_default")


def relu_mlp(outputs: int, bias: bool = True) -> nn.Sequential:
    """4 -> 6 -> 5 -> outputs with ReLUs, the penultimate layer's unit 1 dead on every input (a ReLU's usual state)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, outputs, bias=bias))
    with torch.no_grad():
        model[2].weight[1].zero_()
        model[2].bias[1] = -1.0
    return model.eval()


def mlp_batches(outputs: int) -> list:
    """Batches of 8, 8 and 5 points (unequal, so the weighting by batch size matters): class labels, or regression
    targets when there is one output."""
    generator = torch.Generator().manual_seed(1)
    sizes = (8, 8, 5)
    inputs = [torch.randn(size, 4, generator=generator) for size in sizes]
    if outputs == 1:
        return [(x, torch.randn(len(x), generator=generator)) for x in inputs]
    return [(x, torch.randint(0, outputs, (len(x),), generator=generator)) for x in inputs]


def context(batches, loss_fn=cross_entropy, classes: int = 3) -> MeasureContext:
    return MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0),
                          num_classes=classes, loss_fn=loss_fn)


def explicit_hessian(model: nn.Module, name: str, batches, loss_fn) -> torch.Tensor:
    """The Hessian (C, d, C, d) of the mean loss over all points w.r.t. the parameter `name`, through the network."""
    weight = dict(model.named_parameters())[name].detach()
    total = sum(len(labels) for _, labels in batches)

    def loss(w: torch.Tensor) -> torch.Tensor:
        return sum(loss_fn(functional_call(model, {name: w}, (inputs,)), labels) * len(labels) / total
                   for inputs, labels in batches)

    return torch.autograd.functional.hessian(loss, weight, vectorize=True)


def kappa(weight: torch.Tensor, hessian: torch.Tensor) -> float:
    """Definition 3 from the explicit Hessian: sum_{s,s'} <w_s, w_s'> Tr(H_{s,s'}), H_{s,s'} = hessian[s, :, s', :]."""
    block_traces = torch.einsum("skzk->sz", hessian)
    return float(((weight @ weight.T) * block_traces).sum())


def normalized_twin(model: nn.Sequential, batches) -> nn.Sequential:
    """The network with the authors' feature normalization written into its weights: penultimate unit j divided by
    sigma_j (its features' standard deviation over all points), the head's column j multiplied by it; a unit
    with sigma_j = 0 (dead, feature 0) gets a zero head column."""
    with torch.no_grad():
        features = torch.cat([model[:4](inputs) for inputs, _ in batches])
    sigma = features.std(dim=0, unbiased=False)
    assert (features[:, sigma == 0] == 0).all() and (sigma == 0).sum() == 1
    twin = copy.deepcopy(model)
    divisor = torch.where(sigma > 0, sigma, 1.0)
    with torch.no_grad():
        twin[2].weight.div_(divisor[:, None])
        twin[2].bias.div_(divisor)
        twin[4].weight.mul_(sigma)
    return twin


@pytest.mark.parametrize("outputs", [3, 1], ids=["cross-entropy", "squared-error"])
def test_full_variant_is_definition_3_on_an_explicit_hessian(outputs):
    model = relu_mlp(outputs, bias=outputs > 1)
    batches = mlp_batches(outputs)
    loss_fn = cross_entropy if outputs > 1 else mean_squared_error
    hessian = explicit_hessian(model, "4.weight", batches, loss_fn)
    expected = kappa(model[4].weight.detach(), hessian)
    value = relative_flatness(model, context(batches, loss_fn, outputs), variant="full")
    assert value == pytest.approx(expected, rel=1e-10)
    assert value > 0


@pytest.mark.parametrize("outputs", [3, 1], ids=["cross-entropy", "squared-error"])
def test_normalized_variant_is_definition_3_on_the_normalized_network(outputs):
    model = relu_mlp(outputs, bias=outputs > 1)
    batches = mlp_batches(outputs)
    loss_fn = cross_entropy if outputs > 1 else mean_squared_error
    twin = normalized_twin(model, batches)
    hessian = explicit_hessian(twin, "4.weight", batches, loss_fn)
    value = relative_flatness(model, context(batches, loss_fn, outputs), variant="normalized")
    assert value == pytest.approx(kappa(twin[4].weight.detach(), hessian), rel=1e-10)


@pytest.mark.parametrize("family, head", [("cnn-batchnorm", "8"), ("vit", "1.head"), ("bert", "model.classifier")])
def test_the_head_is_found_and_its_hessian_is_exact_on_each_architecture(family, head):
    """The BatchNorm CNN (eval mode, its head the last Linear), the timm ViT (`head`, after the flat-input wrapper)
    and BERT on token ids (`classifier`) of `sharpbench measure check`, against the explicit Hessian of the named
    head's weights through the whole network."""
    torch.manual_seed(0)
    model = build_model(ARCHITECTURES[family]).double().eval()
    batches = [(inputs if family == "bert" else inputs.double(), labels) for inputs, labels in check_batches(family, 0)]
    name = head + ".weight"
    hessian = explicit_hessian(model, name, batches, cross_entropy)
    expected = kappa(dict(model.named_parameters())[name].detach(), hessian)
    assert relative_flatness(model, context(batches, classes=10)) == pytest.approx(expected, rel=1e-8)


def rescaled(model: nn.Sequential, factors: torch.Tensor) -> nn.Sequential:
    """Penultimate unit j's weights and bias times factors[j] > 0, the head's column j divided by it: with the ReLU
    between them, the same function."""
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin[2].weight.mul_(factors[:, None])
        twin[2].bias.mul_(factors)
        twin[4].weight.div_(factors)
    return twin


def test_rescaling_the_penultimate_neurons_leaves_the_normalized_variant_unchanged():
    """Petzka et al.'s reparameterization argument on the head: the normalized variant is invariant to rescaling the
    penultimate neurons one by one, the full variant to a layer-wise rescaling only, and the head's plain Hessian
    trace to neither."""
    model = relu_mlp(3)
    batches = mlp_batches(3)
    layerwise = rescaled(model, torch.full((5,), 4.0))
    neuronwise = rescaled(model, torch.tensor([0.5, 7.0, 3.0, 1.5, 4.0]))
    for twin in (layerwise, neuronwise):
        for inputs, _ in batches:
            torch.testing.assert_close(twin(inputs), model(inputs), rtol=1e-12, atol=1e-12)

    def value(net: nn.Module, variant: str) -> float:
        return sharpbench.compute_measure("relative-flatness", net, batches, variant=variant)

    assert value(neuronwise, "normalized") == pytest.approx(value(model, "normalized"), rel=1e-10)
    assert value(layerwise, "normalized") == pytest.approx(value(model, "normalized"), rel=1e-10)
    assert value(layerwise, "full") == pytest.approx(value(model, "full"), rel=1e-10)
    assert value(neuronwise, "full") != pytest.approx(value(model, "full"), rel=1e-2)
    plain_trace = [float(torch.einsum("skzk->", explicit_hessian(net, "4.weight", batches, cross_entropy)))
                   for net in (model, layerwise)]
    assert plain_trace[1] == pytest.approx(16 * plain_trace[0], rel=1e-10)


def test_through_the_registry_it_is_deterministic_and_draws_nothing():
    model = relu_mlp(3)
    batches = mlp_batches(3)
    values = [sharpbench.compute_measure("relative-flatness", model, batches, seed=seed) for seed in (0, 1, 0)]
    assert values[0] == values[1] == values[2] == relative_flatness(model, context(batches))
    assert sharpbench.compute_measure("relative-flatness", model, batches, variant="normalized") != values[0]


def test_bad_parameters_and_models_without_a_linear_head_are_refused():
    batches = mlp_batches(3)
    with pytest.raises(ValueError, match="variant must be one of full, normalized"):
        relative_flatness(relu_mlp(3), context(batches), variant="neuronwise")
    regression = [(inputs, labels.double()) for inputs, labels in batches]
    with pytest.raises(NotImplementedError, match="nn.Linear"):
        relative_flatness(DiagonalLinearNet(4, 0.1).eval(), context(regression, mean_squared_error, 1))
    conv_head = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Unflatten(1, (6, 1)), nn.Conv1d(6, 3, 1),
                              nn.Flatten()).eval()
    with pytest.raises(NotImplementedError, match="nn.Linear"):
        relative_flatness(conv_head, context(batches))
    frozen = relu_mlp(3)
    frozen[4].weight.requires_grad_(False)
    with pytest.raises(NotImplementedError, match="frozen"):
        relative_flatness(frozen, context(batches))
