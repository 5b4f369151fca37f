"""The margin-normalized spectral measures (spectral-complexity-margin, pac-bayes-spectral-margin) against closed
forms on hand-built weights with known singular values and margins, against numpy on a convolution, BatchNorm
folding against the equivalent network without it, the invariances the definitions imply (a ReLU rescaling and a
permutation of hidden units leave the origin-referenced measures unchanged, not the init-referenced ones), the
models they do not apply to, and the registry as a user computes them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import sharpbench
from sharpbench.errors import MeasureError
from sharpbench.measure import MeasureContext
from sharpbench.models.diagonal import DiagonalLinearNet
from sharpbench.models.layers import ToImage
from sharpbench.models.preact_resnet import PreActResNet
from sharpbench_measures.spectral_margin import pac_bayes_spectral_margin, spectral_complexity_margin

pytestmark = pytest.mark.usefixtures("float64_default")

MEASURES = {"spectral-complexity-margin": spectral_complexity_margin,
            "pac-bayes-spectral-margin": pac_bayes_spectral_margin}


def context_of(batches, num_classes: int = 2, initial_state=None) -> MeasureContext:
    return MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0),
                          num_classes=num_classes, initial_state=initial_state)


def rotation(angle: float) -> torch.Tensor:
    return torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


def hand_built():
    """W1 = Q diag(3, 1), W2 = diag(2, 1/2) Q^T, Q the rotation by 45 degrees: singular values (3, 1) and (2, 1/2),
    row norms (sqrt 5, sqrt 5) and (2, 1/2), ||W1||_F^2 = 10, ||W2||_F^2 = 17/4. On x = (t, 0), t > 0, W1 x >= 0,
    so the ReLU passes it and the logits are W2 W1 x = (6 t, 0): with t = k / 6, label 0, the margins are k."""
    q = rotation(math.pi / 4)
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(q @ torch.diag(torch.tensor([3.0, 1.0])))
        model[2].weight.copy_(torch.diag(torch.tensor([2.0, 0.5])) @ q.T)
    inputs = torch.stack([torch.tensor([k / 6, 0.0]) for k in range(1, 12)])   # margins 1, 2, ..., 11
    return model.eval(), [(inputs, torch.zeros(11, dtype=torch.long))]


def test_hand_built_network_has_the_closed_form_with_the_origin_as_reference():
    """gamma is the 10th percentile of the margins 1..11 (linear interpolation: the second, 2); the minimum, 1,
    with percentile 0."""
    model, batches = hand_built()
    context = context_of(batches)
    bartlett = 36 * ((2 * math.sqrt(5) / 3) ** (2 / 3) + (2.5 / 2) ** (2 / 3)) ** 3
    neyshabur = 36 * (10 / 9 + 4.25 / 4)
    assert spectral_complexity_margin(model, context, reference="origin") == pytest.approx(math.log(bartlett / 4),
                                                                                            rel=1e-12)
    assert spectral_complexity_margin(model, context, reference="origin", percentile=0.0) == pytest.approx(
        math.log(bartlett), rel=1e-12)
    assert pac_bayes_spectral_margin(model, context, reference="origin", depth_width_factor=False) == pytest.approx(
        math.log(neyshabur / 4), rel=1e-12)
    depth, width = 2, 2      # two layers, every matrix 2 x 2
    assert pac_bayes_spectral_margin(model, context, reference="origin", depth_width_factor=True) == pytest.approx(
        math.log(depth**2 * width * math.log(depth * width) * neyshabur / 4), rel=1e-12)


def test_hand_built_network_has_the_closed_form_with_the_initial_weights_as_reference():
    """With W_i^0 = W_i / 2, W_i - W_i^0 = W_i / 2: row norms (sqrt 5 / 2, sqrt 5 / 2) and (1, 1/4), squared
    Frobenius norms 10/4 and 17/16; the spectral norms are those of W_i."""
    model, batches = hand_built()
    initial = {name: tensor / 2 for name, tensor in model.state_dict().items()}
    context = context_of(batches, initial_state=initial)
    bartlett = 36 * ((math.sqrt(5) / 3) ** (2 / 3) + (1.25 / 2) ** (2 / 3)) ** 3
    neyshabur = 36 * (2.5 / 9 + (4.25 / 4) / 4)
    assert spectral_complexity_margin(model, context) == pytest.approx(math.log(bartlett / 4), rel=1e-12)
    assert pac_bayes_spectral_margin(model, context, depth_width_factor=False) == pytest.approx(
        math.log(neyshabur / 4), rel=1e-12)


def test_a_convolution_network_agrees_with_numpy_on_its_reshaped_kernels():
    """Spectral, (2,1) and Frobenius norms of each layer's matrix (a kernel as (out, in * 3 * 3)) by numpy, the
    margin percentile by numpy from the logits; h is the largest side of any matrix, here 32 (the head's input)."""
    torch.manual_seed(0)
    model = nn.Sequential(ToImage([1, 4, 4]), nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(32, 3)).eval()
    initial = {name: tensor + 0.1 * torch.randn_like(tensor) for name, tensor in model.state_dict().items()}
    inputs, labels = torch.rand(20, 16), torch.randint(0, 3, (20,))
    context = context_of([(inputs, labels)], num_classes=3, initial_state=initial)
    with torch.no_grad():
        logits = model(inputs).numpy()
    true = logits[np.arange(20), labels.numpy()]
    others = np.where(np.eye(3, dtype=bool)[labels.numpy()], -np.inf, logits).max(axis=1)
    gamma = abs(np.percentile(true - others, 10))
    weights = [model[1].weight.detach().numpy().reshape(2, 9), model[4].weight.detach().numpy()]
    starts = [initial["1.weight"].numpy().reshape(2, 9), initial["4.weight"].numpy()]
    spectral = np.array([np.linalg.norm(w, 2) for w in weights])
    two_one = np.array([np.linalg.norm(w - m, axis=1).sum() for w, m in zip(weights, starts)])
    frobenius = np.array([np.linalg.norm(w - m, "fro") for w, m in zip(weights, starts)])
    bartlett = np.prod(spectral**2) * ((two_one / spectral) ** (2 / 3)).sum() ** 3 / gamma**2
    neyshabur = 2**2 * 32 * math.log(2 * 32) * np.prod(spectral**2) * ((frobenius / spectral) ** 2).sum() / gamma**2
    assert spectral_complexity_margin(model, context) == pytest.approx(math.log(bartlett), rel=1e-10)
    assert pac_bayes_spectral_margin(model, context, depth_width_factor=True) == pytest.approx(math.log(neyshabur),
                                                                                              rel=1e-10)


def test_an_eval_batchnorm_is_folded_into_the_layer_before_it():
    """Linear -> BatchNorm1d -> ReLU -> Linear computes the same function as the network whose first layer is
    diag(a) W, a = weight / sqrt(running_var + eps): both give the same values, for either reference (the
    BatchNorm at initialization, running_var = 1 and weight = 1, folds W^0 into W^0 / sqrt(1 + eps))."""
    torch.manual_seed(0)
    with_bn = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))
    initial = {name: tensor.clone() for name, tensor in with_bn.state_dict().items()}
    with torch.no_grad():
        for p in with_bn.parameters():
            p.add_(0.3 * torch.randn_like(p))
        with_bn[1].running_mean.copy_(torch.randn(4))
        with_bn[1].running_var.copy_(torch.rand(4) + 0.5)
    with_bn.eval()
    bn = with_bn[1]
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    plain = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    with torch.no_grad():
        plain[0].weight.copy_(scale[:, None] * with_bn[0].weight)
        plain[0].bias.copy_(scale * (with_bn[0].bias - bn.running_mean) + bn.bias)
        plain[2].load_state_dict(with_bn[3].state_dict())
    plain_initial = {"0.weight": initial["0.weight"] / math.sqrt(1 + bn.eps), "0.bias": initial["0.bias"],
                     "2.weight": initial["3.weight"], "2.bias": initial["3.bias"]}
    inputs = torch.randn(30, 3)
    assert torch.allclose(with_bn(inputs), plain(inputs), atol=1e-12)
    labels = with_bn(inputs).argmax(dim=1)
    for measure in MEASURES.values():
        for reference in ("init", "origin"):
            folded = measure(with_bn, context_of([(inputs, labels)], 3, initial), reference=reference)
            expected = measure(plain, context_of([(inputs, labels)], 3, plain_initial), reference=reference)
            assert folded == pytest.approx(expected, rel=1e-10)


def mlp_and_twins():
    """A ReLU MLP, its twin with the first layer times 4 and the second divided by 4, and its twin with the first
    layer's units permuted: the same function, all three."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    initial = {name: tensor + 0.2 * torch.randn_like(tensor) for name, tensor in model.state_dict().items()}
    rescaled = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    permuted = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    rescaled.load_state_dict(model.state_dict())
    permuted.load_state_dict(model.state_dict())
    order = torch.randperm(8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        rescaled[0].weight.mul_(4.0), rescaled[0].bias.mul_(4.0), rescaled[2].weight.div_(4.0)
        permuted[0].weight.copy_(model[0].weight[order]), permuted[0].bias.copy_(model[0].bias[order])
        permuted[2].weight.copy_(model[2].weight[:, order])
    generator = torch.Generator().manual_seed(2)
    inputs = torch.randn(40, 4, generator=generator)
    batches = [(inputs, torch.randint(0, 3, (40,), generator=generator))]
    for twin in (rescaled, permuted):
        assert torch.allclose(model(inputs), twin(inputs), atol=1e-12)
    return model, rescaled, permuted, initial, batches


@pytest.mark.parametrize("name", MEASURES)
def test_the_origin_reference_is_invariant_to_rescaling_and_permutation_and_the_init_reference_is_not(name):
    """prod ||W_i||_2^2, gamma and each ratio ||W_i||_{2,1} / ||W_i||_2 or ||W_i||_F / ||W_i||_2 are unchanged by
    W_1 -> a W_1, W_2 -> W_2 / a and by a permutation of hidden units; W_i - W_i^0 is not, W^0 staying put."""
    model, rescaled, permuted, initial, batches = mlp_and_twins()
    measure = MEASURES[name]
    for reference in ("origin", "init"):
        values = [measure(net, context_of(batches, 3, initial), reference=reference)
                  for net in (model, rescaled, permuted)]
        if reference == "origin":
            assert values[1] == pytest.approx(values[0], rel=1e-10)
            assert values[2] == pytest.approx(values[0], rel=1e-10)
        else:
            assert abs(values[1] - values[0]) > 0.1
            assert abs(values[2] - values[0]) > 1e-3


@pytest.mark.parametrize("name", MEASURES)
def test_through_the_registry_as_a_user_computes_it(name):
    """compute_measure gives the function's value, the same under any seed (nothing is drawn); without initial
    weights reference=init is a clear error and reference=origin needs none."""
    model, _, _, initial, batches = mlp_and_twins()
    direct = MEASURES[name](model, context_of(batches, 3, initial))
    values = [sharpbench.compute_measure(name, model, batches, seed=seed, initial_state=initial) for seed in (0, 1)]
    assert values == [pytest.approx(direct, rel=1e-12)] * 2
    with pytest.raises(MeasureError, match="needs the weights at initialization"):
        sharpbench.compute_measure(name, model, batches)
    origin = sharpbench.compute_measure(name, model, batches, reference="origin")
    assert origin == pytest.approx(MEASURES[name](model, context_of(batches, 3), reference="origin"), rel=1e-12)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


@pytest.mark.parametrize("model, reason", [
    (nn.Sequential(nn.Linear(4, 4), nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True),
                   nn.Linear(4, 3)), "TransformerEncoderLayer"),
    (nn.Sequential(_Residual(), nn.ReLU(), nn.Linear(4, 3)), "_Residual"),
    (PreActResNet([1], num_classes=3, width=2, image_shape=[1, 2, 2]), "PreActResNet"),
    (nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 3)), "follows none"),
])
@pytest.mark.parametrize("name", MEASURES)
def test_a_network_that_is_not_a_chain_is_not_applicable(name, model, reason):
    batches = [(torch.rand(6, 4), torch.randint(0, 3, (6,)))]
    with pytest.raises(NotImplementedError, match=reason):
        MEASURES[name](model.eval(), context_of(batches, 3), reference="origin")


@pytest.mark.parametrize("name", MEASURES)
def test_a_regression_model_is_not_applicable(name):
    model = DiagonalLinearNet(4, 0.1)
    with pytest.raises(NotImplementedError, match="needs a classifier"):
        MEASURES[name](model, context_of([(torch.rand(6, 4), torch.rand(6))], num_classes=1), reference="origin")


@pytest.mark.parametrize("name", MEASURES)
def test_bad_parameters_are_clear_errors(name):
    model, batches = hand_built()
    with pytest.raises(ValueError, match="reference must be one of init, origin"):
        MEASURES[name](model, context_of(batches), reference="final")
    with pytest.raises(ValueError, match="percentile must be in"):
        MEASURES[name](model, context_of(batches), reference="origin", percentile=150.0)
    with pytest.raises(MeasureError, match="equals its reference matrix"):
        MEASURES[name](model, context_of(batches, initial_state=model.state_dict()))
