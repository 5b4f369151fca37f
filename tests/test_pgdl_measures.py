"""The PGDL 2020 winners (measures/pgdl.py): the Davies-Bouldin index and the label-wise mixup accuracy against hand
computations, the label variation on hand-built graphs and against an independent loop with the same mixup draws,
the declared sign on a model that generalizes and one that memorized random labels, determinism, a ReLU
rescaling, where they do not apply, and every call through the registry as a user makes it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import sharpbench
from sharpbench.cards.discovery import find_measure
from sharpbench.errors import MeasureError
from sharpbench.measure import MeasureContext
from sharpbench_measures.pgdl import (davies_bouldin, dbi_mixup, graph_label_variation, label_variation,
                                      labelwise_mixup_accuracy, mixup_draws, representations)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks on a shared machine: a second thread only adds synchronization."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def points(*rows: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def identity_classifier(dim: int = 2) -> nn.Linear:
    """logits = x: class c wins where x_c is the largest coordinate; its first layer's output and its head's input
    are the inputs themselves."""
    layer = nn.Linear(dim, dim)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(dim))
        layer.bias.zero_()
    return layer.eval()


def context(batches, num_classes: int, seed: int = 0) -> MeasureContext:
    return MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed),
                          num_classes=num_classes)


def call(name: str, model: nn.Module, batches, num_classes: int, **params) -> float:
    """The card's call (parameters bound and checked as the CLI binds them), without the guard's wrapping."""
    spec = find_measure(name, ())
    return spec.call(model, context(batches, num_classes), spec.bind(params))


# The Davies-Bouldin index: two clusters of two points each, S = 1 for each (points 1 from their centroid).
SEPARATED = (points((0, 0), (2, 0), (10, 0), (12, 0)), torch.tensor([0, 0, 1, 1]))   # M = 10: DB = 2 / 10
OVERLAPPING = (points((0, 0), (2, 0), (1, 1), (3, 1)), torch.tensor([0, 0, 1, 1]))   # M = sqrt 2: DB = 2 / sqrt 2


def test_davies_bouldin_is_the_hand_computed_index():
    assert davies_bouldin(*SEPARATED) == pytest.approx(0.2, rel=1e-12)
    assert davies_bouldin(*OVERLAPPING) == pytest.approx(math.sqrt(2), rel=1e-12)
    # three clusters, S = 1 each, centroids (1, 0), (11, 0), (1, 5): R_AB = 0.2, R_AC = 0.4, R_BC = 2 / sqrt 125; each
    # cluster keeps its worst ratio: (0.4 + 0.2 + 0.4) / 3
    three = points((0, 0), (2, 0), (10, 0), (12, 0), (1, 4), (1, 6))
    assert davies_bouldin(three, torch.tensor([0, 0, 1, 1, 2, 2])) == pytest.approx(1 / 3, rel=1e-12)
    # a ratio of distances: the same for features scaled by any factor
    assert davies_bouldin(7.5 * three, torch.tensor([0, 0, 1, 1, 2, 2])) == pytest.approx(1 / 3, rel=1e-12)
    with pytest.raises(ValueError, match="distinct labels"):
        davies_bouldin(three, torch.zeros(6, dtype=torch.long))


# Two batches for the identity classifier (class 0 wins where x_0 > x_1). In batch 1, class 0 has one correctly
# classified point and two that are not: of its three midpoints (1, .5), (1, 1.5), (0, 2) only the first is right;
# class 1's midpoint (.5, 2.5) is right. In batch 2 every midpoint is right.
BATCH_1 = (points((2, 0), (0, 1), (0, 3), (0, 2), (1, 3)), torch.tensor([0, 0, 0, 1, 1]))
BATCH_2 = (points((2, 0), (4, 0), (0, 2), (0, 4)), torch.tensor([0, 0, 1, 1]))


def test_labelwise_mixup_accuracy_is_the_hand_count():
    model = identity_classifier()
    with torch.no_grad():
        assert labelwise_mixup_accuracy(model, [BATCH_1]) == pytest.approx((1 / 3 + 1) / 2)
        # per label over the batches, then over the labels: class 0 (1/3 + 1) / 2, class 1 (1 + 1) / 2; pairs never
        # cross batches (a cross-batch pair (0, 3) with (4, 0) would be classified right)
        assert labelwise_mixup_accuracy(model, [BATCH_1, BATCH_2]) == pytest.approx((2 / 3 + 1) / 2)
        # a convex class region (a half-plane of a linear classifier) with all its points inside: every midpoint
        assert labelwise_mixup_accuracy(model, [BATCH_2]) == 1.0
        # mix = 0.9: (1.8, .1), (1.8, .3), (0, 1.2) for class 0: two right; (.1, 2.2) right
        assert labelwise_mixup_accuracy(model, [BATCH_1], mix=0.9) == pytest.approx((2 / 3 + 1) / 2)


def batch_1_dbi() -> float:
    """DB of batch 1 by hand: class 0 centroid (2/3, 4/3) at distances 4 sqrt2 / 3, sqrt5 / 3, sqrt29 / 3 from its
    points; class 1 centroid (1/2, 5/2) at sqrt(1/2) from both; centroids sqrt(50) / 6 apart."""
    s0 = (4 * math.sqrt(2) + math.sqrt(5) + math.sqrt(29)) / 9
    return (s0 + math.sqrt(0.5)) / (math.sqrt(50) / 6)


@pytest.mark.parametrize("layer", ["first", "feature"])
def test_dbi_mixup_is_the_hand_computation(layer):
    model = identity_classifier()
    # batch 2: S = 1 for each class, centroids (3, 0) and (0, 3): DB = 2 / (3 sqrt 2)
    expected = (batch_1_dbi() + 2 / (3 * math.sqrt(2))) / 2 * (1 - (2 / 3 + 1) / 2)
    assert call("dbi-mixup", model, [BATCH_1, BATCH_2], 2, layer=layer) == pytest.approx(expected, rel=1e-6)
    assert call("dbi-mixup", model, [BATCH_2], 2, layer=layer) == 0.0    # every midpoint right: 1 - MA = 0


def test_the_first_layer_is_the_first_convolution_max_pooled():
    """A 1x1 convolution with weight 1 passes the 8x8 image on: its pooled output is the maxima of the 4x4 blocks;
    the feature layer is the flattened map the head reads."""
    conv = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)).eval()
    images = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        blocks = images.reshape(5, 2, 4, 2, 4).amax(dim=(2, 4)).reshape(5, -1)
        torch.testing.assert_close(representations(model, images, "first", pool=4), blocks, rtol=0, atol=0)
        torch.testing.assert_close(representations(model, images, "first", pool=1), images.reshape(5, -1))
        torch.testing.assert_close(representations(model, images, "feature"), images.clamp(min=0).reshape(5, -1))


def unit(*degrees: float) -> torch.Tensor:
    return torch.tensor([[math.cos(math.radians(d)), math.sin(math.radians(d))] for d in degrees])


@pytest.mark.parametrize("labels, k, expected", [
    ([0, 0, 1, 1], 1, 0.0),            # each point's nearest neighbour (10 degrees away) has its label
    ([0, 1, 0, 1], 1, 4 / 16),         # each has the other label: sum_i (1 - 0) / (4 N)
    ([0, 0, 1, 0], 1, 2 / 16),         # the pair at 90 and 100 degrees disagrees, both ways
    ([0, 0, 1, 1], 2, 4 * 0.5 / 16),   # the second neighbour (90 degrees away) has the other label: 1 - 1/2 each
])
def test_label_variation_on_a_hand_built_graph(labels, k, expected):
    """Points at 0, 10, 90 and 100 degrees: under cosine similarity 0 and 10 are each other's nearest neighbours,
    as are 90 and 100; the second nearest of 0 is 90 (cos 90 = 0 > cos 100). Without mixup (alpha = 0) through the
    registry, the head's input being the points (each scaled differently: cosine similarity ignores the norm)."""
    features = unit(0, 10, 90, 100) * torch.tensor([[1.0], [3.0], [0.5], [2.0]])
    value = call("label-variation", identity_classifier(), [(features, torch.tensor(labels))], 2, k=k, alpha=0.0)
    assert value == pytest.approx(expected, abs=1e-12)


def test_label_variation_of_soft_labels():
    """Two points, each the other's neighbour: (|y_1|^2 + |y_2|^2 - 2 <y_1, y_2>) / (4 * 2) = |y_1 - y_2|^2 / 8."""
    targets = torch.tensor([[0.7, 0.3], [0.4, 0.6]], dtype=torch.float64)
    assert graph_label_variation(unit(0, 30), targets, k=1) == pytest.approx(0.18 / 8, rel=1e-12)
    with pytest.raises(ValueError, match="k must be"):
        graph_label_variation(unit(0, 30), targets, k=2)


def loop_variation(features: np.ndarray, targets: np.ndarray, k: int) -> float:
    """An independent transcription: each point's k most cosine-similar others, one point at a time."""
    unit_rows = features / np.linalg.norm(features, axis=1, keepdims=True)
    total = 0.0
    for i in range(len(features)):
        similarity = [(unit_rows[i] @ unit_rows[j], j) for j in range(len(features)) if j != i]
        neighbours = [j for _, j in sorted(similarity, reverse=True)[:k]]
        total += targets[i] @ targets[i] - sum(targets[i] @ targets[j] for j in neighbours) / k
    return max(total, 0.0) / (4 * len(features))


def test_label_variation_with_mixup_is_an_independent_computation():
    """The measure (through compute_measure, seed 3) against a loop over the points on the same mixup draws: within
    each batch x~ = lam x + (1 - lam) x[pi], y~ likewise, the head's input being x~."""
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(12, 3, generator=generator), torch.randint(0, 3, (12,), generator=generator))
               for _ in range(3)]
    draws = torch.Generator().manual_seed(3)
    features, targets = [], []
    for inputs, labels in batches:
        order, lam = mixup_draws(draws, len(labels), 2.0)
        onehot = np.eye(3)[labels.numpy()]
        features.append(lam[:, None] * inputs.double().numpy() + (1 - lam[:, None]) * inputs.double().numpy()[order])
        targets.append(lam[:, None] * onehot + (1 - lam[:, None]) * onehot[order])
    expected = loop_variation(np.concatenate(features), np.concatenate(targets), k=2)
    value = sharpbench.compute_measure("label-variation", identity_classifier(3), batches, seed=3, k=2)
    assert value == pytest.approx(expected, rel=1e-6)
    assert value != pytest.approx(sharpbench.compute_measure("label-variation", identity_classifier(3), batches,
                                                             seed=3, k=2, alpha=0.0), rel=1e-3)


def trained_mlp(inputs: torch.Tensor, labels: torch.Tensor) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 48), nn.ReLU(), nn.Linear(48, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
    return model.eval()


def test_the_declared_sign_on_a_model_that_memorized_random_labels():
    """higher_means: worse. Two MLPs fit 120 digits exactly, one on their labels (test accuracy about 0.8) and one on
    shuffled labels (about 0.1, chance). The memorizer's classes are entangled in its representations (larger DBI,
    larger label variation) and its decision regions are not convex between same-label points (lower mixup
    accuracy): both measures are larger for it."""
    images, digits = load_digits(return_X_y=True)
    images, digits = torch.tensor(images[:600] / 16, dtype=torch.float32), torch.tensor(digits[:600])
    train, test = slice(0, 120), slice(120, 600)
    shuffled = digits[train][torch.randperm(120, generator=torch.Generator().manual_seed(0))]
    values = {}
    for name, labels in (("true", digits[train]), ("random", shuffled)):
        model = trained_mlp(images[train], labels)
        with torch.no_grad():
            assert (model(images[train]).argmax(1) == labels).all()
            test_accuracy = (model(images[test]).argmax(1) == digits[test]).double().mean().item()
        assert test_accuracy > 0.7 if name == "true" else test_accuracy < 0.25
        batches = [(images[train][i:i + 60], labels[i:i + 60]) for i in (0, 60)]
        values[name] = {measure: sharpbench.compute_measure(measure, model, batches)
                        for measure in ("dbi-mixup", "label-variation")}
    assert find_measure("dbi-mixup", ()).higher_means == find_measure("label-variation", ()).higher_means == "worse"
    for measure in ("dbi-mixup", "label-variation"):
        assert values["random"][measure] > values["true"][measure]


def small_mlp() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3)).eval()


def mlp_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(24, 6, generator=generator), torch.randint(0, 3, (24,), generator=generator))
            for _ in range(3)]


def test_determinism_and_the_generator():
    """dbi-mixup draws nothing (all pairs, a fixed weight): the same for every seed. label-variation draws its mixup
    from the generator: the same for one seed, another for another."""
    model, batches = small_mlp(), mlp_batches()
    dbi = [sharpbench.compute_measure("dbi-mixup", model, batches, seed=seed) for seed in (0, 0, 1)]
    assert dbi[0] == dbi[1] == dbi[2]
    variation = [sharpbench.compute_measure("label-variation", model, batches, seed=seed) for seed in (0, 0, 1)]
    assert variation[0] == variation[1] != variation[2]


def test_a_relu_rescaling_leaves_both_unchanged():
    """The first layer times 4, the next divided by 4: the same function. The first layer's output is scaled by 4,
    which the DB index (a ratio of distances) ignores; the head's input does not change."""
    model, batches = small_mlp(), mlp_batches()
    twin = small_mlp()
    with torch.no_grad():
        twin[0].weight.mul_(4.0), twin[0].bias.mul_(4.0), twin[2].weight.div_(4.0)
    for measure in ("dbi-mixup", "label-variation"):
        assert sharpbench.compute_measure(measure, twin, batches) == pytest.approx(
            sharpbench.compute_measure(measure, model, batches), rel=1e-5)


def test_through_the_registry_on_a_batchnorm_cnn_and_a_vit():
    """On a CNN with BatchNorm (eval mode) and a timm ViT, through compute_measure: finite, and the card's defaults
    are the function's."""
    import timm

    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 8 * 8, 3)).eval()
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=3, img_size=8, patch_size=4, embed_dim=16, depth=1,
                            num_heads=2).eval()
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(12, 3, 8, 8, generator=generator), torch.arange(12) % 3) for _ in range(2)]
    for model in (cnn, vit):
        for name, function in (("dbi-mixup", dbi_mixup), ("label-variation", label_variation)):
            value = sharpbench.compute_measure(name, model, batches, seed=5)
            assert math.isfinite(value)
            with torch.no_grad():
                assert value == function(model, context(batches, 3, seed=5))


def test_where_they_do_not_apply_and_bad_parameters():
    """Token ids cannot be mixed (NotImplementedError), except by label-variation without mixup; a regression has
    no labels; bad parameters are ValueErrors naming them."""
    torch.manual_seed(0)
    text = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(4 * 5, 2)).eval()
    tokens = [(torch.randint(0, 10, (8, 5)), torch.arange(8) % 2)]
    for name, params in (("dbi-mixup", {}), ("label-variation", {})):
        with pytest.raises(NotImplementedError, match="token ids"):
            call(name, text, tokens, 2, **params)
    assert math.isfinite(call("label-variation", text, tokens, 2, alpha=0.0))
    regression = nn.Linear(3, 1).eval()
    with pytest.raises(MeasureError) as raised:
        sharpbench.compute_measure("dbi-mixup", regression, [(torch.randn(4, 3), torch.randn(4))])
    assert isinstance(raised.value.__cause__, NotImplementedError) and "regression" in str(raised.value)
    with pytest.raises(NotImplementedError, match="regression"):
        label_variation(regression, context([(torch.randn(4, 3), torch.randn(4))], 1))
    batches = mlp_batches()
    for function, params, match in ((dbi_mixup, {"layer": "middle"}, "layer"), (dbi_mixup, {"pool": 0}, "pool"),
                                    (dbi_mixup, {"mix": 1.0}, "mix"), (label_variation, {"k": 0}, "k must"),
                                    (label_variation, {"alpha": -1.0}, "alpha")):
        with pytest.raises(ValueError, match=match):
            function(small_mlp(), context(batches, 3), **params)
