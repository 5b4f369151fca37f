"""The baseline measures of the field, each through the registry (so its card is exercised too): against an
independent computation or a closed form, and the contract every measure keeps (deterministic for a seed,
read-only, BatchNorm networks in eval mode, a timm ViT)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

import sharpbench
from sharpbench.errors import MeasureError
from sharpbench.kernels.flat import FlatModel
from sharpbench.cards.discovery import Registry

BASELINES = {
    "pac-bayes-flatness": "worse", "pac-bayes-mag-flatness": "worse", "hessian-max-eigenvalue": "worse",
    "hessian-trace": "worse", "fisher-rao-norm": "worse", "path-norm": "worse", "spectral-norm-product": "worse",
    "frobenius-norm-product": "worse", "distance-from-init": "worse", "output-margin": "better",
    "keskar-sharpness": "worse", "param-norm": "worse", "train-loss": "worse",
}


def test_every_baseline_is_registered_with_its_sign_and_a_definition():
    registry = Registry.discover()
    for name, sign in BASELINES.items():
        spec = registry.measure(name)
        assert spec.higher_means == sign, name
        assert callable(spec.resolve()) and spec.source and spec.definition, name


# --- models ------------------------------------------------------------------------------------------------


def classification_batches(inputs: torch.Tensor, labels: torch.Tensor, sizes: list[int]) -> list:
    return list(zip(inputs.split(sizes), labels.split(sizes)))


def smooth_mlp_and_batches():
    """A tanh MLP in float64 on batches of unequal size (the Hessian is of the size-weighted mean loss)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    inputs, labels = torch.randn(20, 4, dtype=torch.float64), torch.randint(0, 3, (20,))
    return model, classification_batches(inputs, labels, [8, 8, 4])


def batchnorm_cnn():
    """Conv - BatchNorm - ReLU - Linear with running statistics far from (0, 1), so eval mode matters."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 3))
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].weight.uniform_(0.5, 1.5)
    batches = [(torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8,))) for _ in range(2)]
    return model, batches


def tiny_vit():
    torch.manual_seed(2)
    model = VisionTransformer(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=16, depth=1,
                              num_heads=2)
    batches = [(torch.randn(6, 1, 8, 8), torch.randint(0, 3, (6,))) for _ in range(2)]
    return model, batches


# --- the contract of every measure -------------------------------------------------------------------------


@pytest.mark.parametrize("build", [batchnorm_cnn, tiny_vit], ids=["batchnorm-cnn", "timm-vit"])
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_is_deterministic_read_only_and_runs_on_batchnorm_and_vit(name, build):
    model, batches = build()
    initial = {key: value + 0.01 for key, value in model.state_dict().items()}
    model.train()  # compute_measure must use eval mode itself
    before = {key: value.clone() for key, value in model.state_dict().items()}
    # compute_measure runs the measure under run_guarded, which fails if any weight or buffer changed
    first = sharpbench.compute_measure(name, model, batches, seed=3, initial_state=initial)
    second = sharpbench.compute_measure(name, model, batches, seed=3, initial_state=initial)
    assert first == second and math.isfinite(first)
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())


# --- curvature -----------------------------------------------------------------------------------------------


def explicit_hessian(model: nn.Module, batches: list) -> torch.Tensor:
    """The Hessian of the mean cross-entropy over all points, by torch.autograd.functional.hessian."""
    flat = FlatModel.of(model)
    inputs = torch.cat([x for x, _ in batches])
    labels = torch.cat([y for _, y in batches])
    return torch.autograd.functional.hessian(lambda w: F.cross_entropy(flat.logits(w, inputs), labels), flat.w0)


def test_hessian_max_eigenvalue_matches_the_explicit_hessian():
    model, batches = smooth_mlp_and_batches()
    expected = torch.linalg.eigvalsh(explicit_hessian(model, batches)).max().item()
    value = sharpbench.compute_measure("hessian-max-eigenvalue", model, batches)
    assert value == pytest.approx(expected, rel=1e-3)


def test_hessian_trace_is_within_hutchinsons_standard_deviation_of_the_explicit_trace():
    model, batches = smooth_mlp_and_batches()
    hessian = explicit_hessian(model, batches)
    probes = 200
    # Rademacher probes: Var(v^T H v) = 2 sum_{i != j} H_ij^2, so the mean of N has this standard deviation.
    std = math.sqrt(2 * (hessian.square().sum() - hessian.diagonal().square().sum()).item() / probes)
    exact = hessian.trace().item()
    assert 4 * std < 0.2 * abs(exact)  # the tolerance below is tight enough to catch a wrong trace
    estimates = [sharpbench.compute_measure("hessian-trace", model, batches, seed=seed, probes=probes)
                 for seed in (0, 1)]
    assert all(abs(estimate - exact) < 4 * std for estimate in estimates)
    assert estimates[0] != estimates[1]  # the probes come from the run's seed


def test_fisher_rao_norm_matches_liangs_identity_on_a_bias_free_relu_network():
    """For a bias-free ReLU network of L+1 layers, <w, grad l> = (L+1) <dl/dz, z> (Liang et al., Lemma 2.1)."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 7, bias=False), nn.ReLU(), nn.Linear(7, 6, bias=False), nn.ReLU(),
                          nn.Linear(6, 4, bias=False)).double()
    inputs, labels = torch.randn(12, 5, dtype=torch.float64), torch.randint(0, 4, (12,))
    with torch.no_grad():
        logits = model(inputs)
    dl_dz = F.softmax(logits, dim=1) - F.one_hot(labels, 4)
    expected = math.sqrt((9 * (dl_dz * logits).sum(dim=1).square().mean()).item())
    batches = classification_batches(inputs, labels, [5, 7])
    assert sharpbench.compute_measure("fisher-rao-norm", model, batches) == pytest.approx(expected, rel=1e-10)


def test_fisher_rao_norm_matches_per_example_gradients_with_biases_and_batchnorm():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3)).double()
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
    model.eval()
    inputs, labels = torch.randn(10, 5, dtype=torch.float64), torch.randint(0, 3, (10,))
    params = list(model.parameters())
    squares = []
    for x, y in zip(inputs, labels):
        gradients = torch.autograd.grad(F.cross_entropy(model(x[None]), y[None]), params)
        squares.append(sum((p * g).sum() for p, g in zip(params, gradients)) ** 2)
    expected = torch.stack(squares).mean().sqrt().item()
    batches = classification_batches(inputs, labels, [4, 6])
    assert sharpbench.compute_measure("fisher-rao-norm", model, batches) == pytest.approx(expected, rel=1e-10)


# --- PAC-Bayes -------------------------------------------------------------------------------------------------


def separable_linear_problem():
    """A bias-free linear classifier that labels its own data: training accuracy 1."""
    torch.manual_seed(5)
    model = nn.Linear(6, 3, bias=False).double()
    inputs = torch.randn(64, 6, dtype=torch.float64)
    with torch.no_grad():
        labels = model(inputs).argmax(dim=1)
    return model, classification_batches(inputs, labels, [32, 32])


def scaled(model: nn.Module, factor: float) -> nn.Module:
    copy = nn.Linear(model.in_features, model.out_features, bias=False).double()
    with torch.no_grad():
        copy.weight.copy_(model.weight * factor)
    return copy


def test_pac_bayes_sigma_shrinks_by_the_factor_that_sharpens_a_linear_classifier():
    """(W/k + sigma xi) x has the argmax of (W + k sigma xi) x: with the same noise draws sigma*(W/k) = sigma*(W)/k,
    so 1/sigma^2 grows by k^2 (up to the bisection's resolution)."""
    model, batches = separable_linear_problem()
    value = sharpbench.compute_measure("pac-bayes-flatness", model, batches, steps=24)
    sharper = sharpbench.compute_measure("pac-bayes-flatness", scaled(model, 0.25), batches, steps=24)
    assert 0.1 < value < 1e6  # sigma found well inside the interval [1e-4, 10], not at a bound
    assert sharper == pytest.approx(16 * value, rel=1e-4)


def test_magnitude_aware_pac_bayes_without_floor_is_invariant_to_rescaling():
    model, batches = separable_linear_problem()
    value = sharpbench.compute_measure("pac-bayes-mag-flatness", model, batches, steps=24, eps=0.0)
    rescaled = sharpbench.compute_measure("pac-bayes-mag-flatness", scaled(model, 0.25), batches, steps=24, eps=0.0)
    assert rescaled == pytest.approx(value, rel=1e-4)


def test_pac_bayes_flatness_grows_when_the_last_layer_of_a_relu_network_shrinks():
    """Dividing the head by 4 leaves the predictions alone but makes the same noise on it 4 times stronger."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    inputs = torch.randn(64, 6, dtype=torch.float64)
    with torch.no_grad():
        labels = model(inputs).argmax(dim=1)
    batches = classification_batches(inputs, labels, [32, 32])
    value = sharpbench.compute_measure("pac-bayes-flatness", model, batches)
    with torch.no_grad():
        model[2].weight /= 4
        model[2].bias /= 4
    assert sharpbench.compute_measure("pac-bayes-flatness", model, batches) > 1.5 * value


# --- norms -------------------------------------------------------------------------------------------------------


def test_spectral_and_frobenius_products_count_linear_and_convolution_layers_only():
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    with torch.no_grad():
        # the kernel as a (2, 4) matrix has orthogonal rows [1, 2, 0, 0] and [0, 0, 3, 0]: singular values 3, sqrt(5)
        model[0].weight.copy_(torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]]).view(2, 1, 2, 2))
        model[4].weight.zero_()
        model[4].weight[0, 0], model[4].weight[1, 5] = 3.0, 4.0  # singular values 4 and 3
        model[1].weight.fill_(7.0)  # normalization layers and biases are not counted
    batches = [(torch.randn(2, 1, 3, 3), torch.tensor([0, 1]))]
    assert sharpbench.compute_measure("spectral-norm-product", model, batches) == pytest.approx(3 * 4, rel=1e-12)
    assert sharpbench.compute_measure("frobenius-norm-product", model, batches) == pytest.approx(
        math.sqrt(14) * 5, rel=1e-12)


def test_path_norm_matches_the_sum_over_paths_with_batchnorm_as_a_squared_affine_layer():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.ReLU(), nn.Linear(2, 1))
    w1, b1 = torch.tensor([[1.0, -2.0], [3.0, 0.5]]), torch.tensor([0.5, -1.0])
    gamma, beta = torch.tensor([2.0, -0.5]), torch.tensor([0.1, 0.3])
    mean, var = torch.tensor([1.0, -2.0]), torch.tensor([4.0, 0.25])
    w2, b2 = torch.tensor([[2.0, -1.0]]), torch.tensor([0.3])
    with torch.no_grad():
        model[0].weight.copy_(w1), model[0].bias.copy_(b1)
        model[1].weight.copy_(gamma), model[1].bias.copy_(beta)
        model[1].running_mean.copy_(mean), model[1].running_var.copy_(var)
        model[3].weight.copy_(w2), model[3].bias.copy_(b2)
    a = gamma / (var + model[1].eps).sqrt()
    c = beta - a * mean
    # paths input -> output, bias of layer 1 -> output, BatchNorm shift -> output, output bias
    hidden = a.square() * (w1.square().sum(dim=1) + b1.square()) + c.square()
    expected = math.sqrt((w2.square() @ hidden + b2.square()).item())
    batches = [(torch.randn(4, 2), torch.tensor([0, 0, 0, 0]))]
    assert sharpbench.compute_measure("path-norm", model, batches) == pytest.approx(expected, rel=1e-6)


def test_path_norm_is_invariant_to_rescaling_a_relu_unit_and_param_norm_is_not():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    batches = [(torch.randn(3, 3, dtype=torch.float64), torch.tensor([0, 1, 0]))]
    before = [sharpbench.compute_measure(name, model, batches) for name in ("path-norm", "param-norm")]
    with torch.no_grad():
        model[2].weight[1] *= 10.0  # unit 1 of the second hidden layer: incoming weights and bias times 10,
        model[2].bias[1] *= 10.0
        model[4].weight[:, 1] /= 10.0  # outgoing weights divided by 10: the same function
    after = [sharpbench.compute_measure(name, model, batches) for name in ("path-norm", "param-norm")]
    assert after[0] == pytest.approx(before[0], rel=1e-12)
    assert after[1] > 1.1 * before[1]


def test_distance_from_init_is_the_l2_distance_and_needs_the_initial_weights():
    model, batches = batchnorm_cnn()
    trainable = sum(p.numel() for p in model.parameters())
    initial = {key: value - 0.5 if key in dict(model.named_parameters()) else value + 9.0
               for key, value in model.state_dict().items()}  # buffers differ too, and must not count
    value = sharpbench.compute_measure("distance-from-init", model, batches, initial_state=initial)
    assert value == pytest.approx(0.5 * math.sqrt(trainable), rel=1e-6)  # w - 0.5 rounded to float32
    with pytest.raises(MeasureError, match="needs the weights at initialization"):
        sharpbench.compute_measure("distance-from-init", model, batches)
    del initial["4.weight"]
    with pytest.raises(MeasureError, match="no tensor '4.weight'"):
        sharpbench.compute_measure("distance-from-init", model, batches, initial_state=initial)


# --- margins and Keskar's sharpness -----------------------------------------------------------------------------


def test_output_margin_is_a_percentile_of_hand_built_margins():
    identity = nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(4))  # the inputs are the logits
    logits = torch.tensor([[3.0, 1.0, 0.0, 0.0], [0.0, 5.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 7.0, 0.0],
                           [0.0, 0.0, 0.0, -1.0]])
    labels = torch.tensor([0, 2, 3, 2, 0])  # margins 2, -4, 0, 5, 0: sorted -4, 0, 0, 2, 5
    batches = classification_batches(logits, labels, [2, 3])
    # linear interpolation between order statistics: the 10th percentile sits at 0.4 of the way from -4 to 0
    assert sharpbench.compute_measure("output-margin", identity, batches) == pytest.approx(-2.4)
    assert sharpbench.compute_measure("output-margin", identity, batches, percentile=50.0) == pytest.approx(0.0)
    assert sharpbench.compute_measure("output-margin", identity, batches, percentile=100.0) == pytest.approx(5.0)
    regression = [(torch.randn(4, 1), torch.randn(4))]      # one output: no margin, and an error that says so
    with pytest.raises(MeasureError, match="needs a classifier.*1 output"):
        sharpbench.compute_measure("output-margin", nn.Linear(1, 1), regression)


def test_keskar_sharpness_matches_the_best_vertex_of_the_box_on_a_convex_loss():
    """Cross-entropy of a linear model is convex in the weights, so its maximum over the box is at a vertex."""
    model = nn.Linear(2, 2, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))  # weights at 0 move too: c = |w| + 1
    torch.manual_seed(8)
    inputs, labels = torch.randn(6, 2, dtype=torch.float64), torch.tensor([0, 1, 0, 1, 1, 0])
    rho = 0.05
    w = model.weight.detach()
    radius = rho * (w.abs() + 1)

    def loss(weight: torch.Tensor) -> float:
        return F.cross_entropy(inputs @ weight.T, labels).item()

    best = max(loss(w + radius * torch.tensor(signs, dtype=torch.float64).view(2, 2))
               for signs in itertools.product((-1.0, 1.0), repeat=4))
    expected = (best - loss(w)) / (1 + loss(w))
    value = sharpbench.compute_measure("keskar-sharpness", model, [(inputs, labels)], rho=rho)
    assert value == pytest.approx(expected, rel=1e-6)


# --- CUDA (skipped on machines without one) -------------------------------------------------------------------

# Measures that draw random numbers: CPU and CUDA generators give different streams for the same seed.
RANDOMIZED = {"pac-bayes-flatness", "pac-bayes-mag-flatness", "hessian-trace"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_runs_on_cuda_and_the_deterministic_ones_agree_with_the_cpu(name):
    model, batches = batchnorm_cnn()
    initial = {key: value + 0.01 for key, value in model.state_dict().items()}
    on_cpu = sharpbench.compute_measure(name, model, batches, initial_state=initial)
    model.cuda()
    initial = {key: value.cuda() for key, value in initial.items()}
    on_cuda = [sharpbench.compute_measure(name, model, batches, initial_state=initial) for _ in range(2)]
    assert math.isfinite(on_cuda[0])
    assert on_cuda[1] == pytest.approx(on_cuda[0], rel=1e-4)  # cuDNN backward passes need not be bitwise repeatable
    if name not in RANDOMIZED:  # TF32 convolutions and another Lanczos start vector: agreement to 1e-2
        assert on_cuda[0] == pytest.approx(on_cpu, rel=1e-2, abs=1e-6)


def test_path_norm_refuses_a_model_of_token_ids_rather_than_feeding_it_floats():
    model = torch.nn.Sequential(torch.nn.Embedding(20, 4), torch.nn.Flatten(), torch.nn.Linear(12, 3))
    batches = [(torch.randint(0, 20, (8, 3)), torch.randint(0, 3, (8,)))]
    with pytest.raises(MeasureError, match="NotImplementedError: path-norm needs real-valued inputs .* torch.int64"):
        sharpbench.compute_measure("path-norm", model, batches)
