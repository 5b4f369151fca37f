"""The winning entries of the PGDL 2020 competition (Jiang et al., "NeurIPS 2020 Competition: Predicting
Generalization in Deep Learning"), as measures on the sharpness points (the context's training points).

`dbi_mixup` (Natekar and Sharma, 1st place): the Davies-Bouldin index of the training points' representations at a
layer, clustered by their labels, times one minus the label-wise mixup accuracy. `label_variation` (Lassance,
Bethune, Bontonou, Hamidouche and Gripon, 3rd place, "VPM"): how much the (mixup) label signal varies along a
k-nearest-neighbour graph of the penultimate-layer representations. Both follow the authors' released code (the
card says where and why they depart from it); both need a classifier, and mixup needs real-valued inputs.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import davies_bouldin_score
from torch import nn

from sharpbench import MeasureContext
from sharpbench_measures.margin import require_classifier

LAYERS = ("first", "feature")
# The modules whose output can be "the first layer": the released code takes the first Keras layer that has
# weights (a Conv2D or a Dense); here, the first of these to run in the forward pass.
_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def classifier_head(model: nn.Module) -> nn.Module:
    """The layer that produces the logits: timm's `get_classifier()` when the model has it, else its last nn.Linear
    (BERT's `classifier`, an MLP's or a ResNet's last layer); its input is the feature-layer representation."""
    if hasattr(model, "get_classifier") and isinstance(model.get_classifier(), nn.Module):
        return model.get_classifier()
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise NotImplementedError("the feature layer is the input of the classifier head, and this model has no "
                                  "get_classifier() and no nn.Linear layer")
    return linears[-1]


def representations(model: nn.Module, inputs: torch.Tensor, layer: str, pool: int = 1) -> torch.Tensor:
    """One forward pass of `inputs`; the representation at `layer`, flattened to (N, d).

    `feature`: the input of the classifier head. `first`: the output of the first nn.Linear or convolution to run,
    a (N, C, H, W) map first max-pooled over non-overlapping pool x pool windows (the released code's 4x4
    MaxPooling2D; a window is cut to the map's size when the map is smaller)."""
    captured: list[torch.Tensor] = []
    if layer == "feature":
        handles = [classifier_head(model).register_forward_hook(lambda _, args, __: captured.append(args[0]))]
    else:
        def first_output(_: nn.Module, __: tuple, output: torch.Tensor) -> None:
            if not captured:
                captured.append(output)
        handles = [module.register_forward_hook(first_output) for module in model.modules()
                   if isinstance(module, _WEIGHT_LAYERS)]
    try:
        model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    if not captured:
        raise NotImplementedError(f"no {'classifier head' if layer == 'feature' else 'linear or convolution layer'} "
                                  f"ran in the model's forward pass")
    output = captured[0]
    if layer == "first" and output.dim() == 4 and pool > 1:
        output = F.max_pool2d(output, kernel_size=(min(pool, output.shape[2]), min(pool, output.shape[3])))
    return output.reshape(len(inputs), -1)


def davies_bouldin(features: torch.Tensor, labels: torch.Tensor) -> float:
    """The Davies-Bouldin index of the rows of `features` clustered by `labels` (scikit-learn's, in float64): the
    mean over clusters i of max_{j != i} (S_i + S_j) / M_ij, S_i the mean Euclidean distance of cluster i's points to
    its centroid, M_ij the distance between the centroids. Lower: tighter, better separated classes."""
    distinct = len(labels.unique())
    if not 1 < distinct < len(labels):
        raise ValueError(f"the Davies-Bouldin index needs 2 to n - 1 distinct labels among n points; a batch of "
                         f"{len(labels)} points has {distinct}")
    return float(davies_bouldin_score(features.double().cpu().numpy(), labels.cpu().numpy()))


def labelwise_mixup_accuracy(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
                             mix: float = 0.5) -> float:
    """The model's accuracy on mixed same-label inputs mix x_i + (1 - mix) x_j against that label, over every pair
    i < j of points with one label in one batch; averaged over the batches for each label, then over the labels (as
    the released code does). A label with fewer than two points in a batch has no pair there."""
    accuracies: dict[int, list[float]] = defaultdict(list)
    for inputs, labels in batches:
        mixed, targets = [], []
        for label in labels.unique().tolist():
            members = inputs[labels == label]
            first, second = torch.triu_indices(len(members), len(members), offset=1, device=inputs.device)
            mixed.append(mix * members[first] + (1 - mix) * members[second])
            targets.append(torch.full((len(first),), label, device=labels.device))
        mixed_inputs, mixed_targets = torch.cat(mixed), torch.cat(targets)
        if not len(mixed_targets):
            continue
        # in chunks of the batch's own size: the pairs number up to m (m - 1) / 2
        hits = torch.cat([model(chunk).argmax(dim=-1) for chunk in mixed_inputs.split(len(inputs))]) == mixed_targets
        for label in mixed_targets.unique().tolist():
            accuracies[label].append(hits[mixed_targets == label].double().mean().item())
    if not accuracies:
        raise ValueError("label-wise mixup needs two training points of one label in one batch, and no batch has any")
    return float(np.mean([np.mean(values) for values in accuracies.values()]))


def _require_real_inputs(context: MeasureContext, name: str) -> None:
    if any(not inputs.is_floating_point() for inputs, _ in context.batches):
        raise NotImplementedError(f"{name} mixes inputs (mixup: a convex combination of two inputs), which is not "
                                  f"defined for integer inputs such as token ids")


def dbi_mixup(model: nn.Module, context: MeasureContext, *, layer: str = "first", pool: int = 4,
              mix: float = 0.5) -> float:
    """Natekar and Sharma's winning PGDL measure: DBI x (1 - label-wise mixup accuracy), the DBI the mean over the
    sharpness batches of each batch's Davies-Bouldin index of its points' representations at `layer` clustered by
    label (the released code averages it over chunks of 120 points), the mixup accuracy on the same batches."""
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
    if pool < 1:
        raise ValueError(f"pool must be >= 1 (1: no pooling), got {pool}")
    if not 0 < mix < 1:
        raise ValueError(f"mix must be in (0, 1), got {mix}")
    require_classifier(context, "dbi-mixup (it compares the training points' labels)")
    _require_real_inputs(context, "dbi-mixup")
    with torch.no_grad():
        index = np.mean([davies_bouldin(representations(model, inputs, layer, pool), labels)
                         for inputs, labels in context.batches])
        accuracy = labelwise_mixup_accuracy(model, context.batches, mix)
    return float(index * (1 - accuracy))


def graph_label_variation(features: torch.Tensor, targets: torch.Tensor, k: int = 1) -> float:
    """tr(Y^T L Y) / (4 N) for the N rows of `features` and their label signal Y (N, C), L = I - D^-1/2 A D^-1/2 the
    normalized Laplacian of the directed, unweighted k-nearest-neighbour graph A of the L2-normalized features
    (A_ij = 1 when j is among the k most cosine-similar rows to i, j != i; so D = k I and L = I - A / k), floored at
    0. 0: every point's neighbours carry its label; larger: neighbouring points of different labels."""
    n = len(features)
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, N - 1] for N = {n} points, got {k}")
    unit = F.normalize(features.double(), dim=1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(float("-inf"))
    neighbours = similarity.topk(k, dim=1).indices            # (N, k)
    y = targets.double()
    # tr(Y^T A Y) / k = (1 / k) sum_i sum_{j in N_k(i)} <y_i, y_j>, without forming A
    smooth = (y[:, None, :] * y[neighbours]).sum() / k
    return max(((y * y).sum() - smooth).item(), 0.0) / (4 * n)


def mixup_draws(generator: torch.Generator, size: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """A random permutation of range(size) and size mixing weights lambda ~ Beta(alpha, alpha), from a numpy generator
    seeded by `generator` (torch draws no Beta variates from a given generator)."""
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    rng = np.random.default_rng(seed)
    return rng.permutation(size), rng.beta(alpha, alpha, size)


def _mixed(tensor: torch.Tensor, order: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    lam = lam.to(tensor.dtype).reshape(-1, *[1] * (tensor.dim() - 1))
    return lam * tensor + (1 - lam) * tensor[order]


def label_variation(model: nn.Module, context: MeasureContext, *, k: int = 1, alpha: float = 2.0) -> float:
    """Lassance et al.'s VPM: the label variation (`graph_label_variation`) of the mixup label signal on the k-NN
    graph of the penultimate-layer (classifier-head input) representations of mixed sharpness points; within each
    batch, x~ = lambda x + (1 - lambda) x_pi, y~ = lambda e_y + (1 - lambda) e_y_pi (alpha = 0: no mixup)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0 (0: no mixup), got {alpha}")
    require_classifier(context, "label-variation (it compares the training points' labels)")
    if alpha > 0:
        _require_real_inputs(context, "label-variation with mixup (alpha > 0)")
    features, targets = [], []
    with torch.no_grad():
        for inputs, labels in context.batches:
            onehot = F.one_hot(labels, context.num_classes).double()
            if alpha > 0:
                order, lam = mixup_draws(context.generator, len(labels), alpha)
                order, lam = torch.as_tensor(order, device=inputs.device), torch.as_tensor(lam, device=inputs.device)
                inputs, onehot = _mixed(inputs, order, lam), _mixed(onehot, order, lam)
            features.append(representations(model, inputs, "feature"))
            targets.append(onehot)
    return graph_label_variation(torch.cat(features), torch.cat(targets), k)
