"""Datasets too large to hold in memory (ImageNet, MNLI): read through a torch Dataset, scored in batches.

A streamed dataset gives a :class:`StreamedData`: the training set (a fixed seeded subset of it feeds the
sharpness batches, another the train error), the test set and each OOD set as an :class:`EvalSet`. An
OOD set keeps its own labels: ImageNet-R and -A hold 200 of the 1000 classes, HANS has two labels
(entailment, non-entailment) for a three-way MNLI model. ``label_groups`` maps each label of the set to
the model's classes it stands for, and :func:`stream_errors` scores a model the way each benchmark does:
the prediction is the group of the arg-max over the classes the set uses (Hendrycks et al.'s logit mask
for ImageNet-R/A, McCoy et al.'s neutral-or-contradiction rule for HANS), and the loss is the
cross-entropy of the group probabilities (log-sum-exp of each group's logits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from sharpbench.data.outcomes import Outcomes
from sharpbench.cards.schema import Param, positive

Tensor = torch.Tensor
Groups = tuple[tuple[int, ...], ...]

# The card field of every streamed dataset that says on how many (seeded) training examples the train error is
# measured: all of ImageNet's 1.28M images or MNLI's 393k pairs would cost more than the rest of a build.
TRAIN_EVAL_SIZE = Param(int, default=10000, check=positive)


@dataclass(frozen=True)
class EvalSet:
    """A labelled set a model is scored on. Items are (input tensor, label); label k of the set stands for
    the model's classes ``label_groups[k]`` (None: label k is class k)."""

    dataset: Dataset
    label_groups: Groups | None = None

    def __post_init__(self) -> None:
        if self.label_groups is not None:
            used = [c for group in self.label_groups for c in group]
            if not self.label_groups or any(not group for group in self.label_groups) or len(set(used)) != len(used):
                raise ValueError(f"label_groups must be non-empty, disjoint groups of classes: {self.label_groups}")


@dataclass(frozen=True)
class StreamedData:
    """A streamed dataset: the training set, the test set and the OOD sets (by the card's shift names)."""

    train: Dataset
    test: EvalSet
    ood: dict[str, EvalSet] = field(default_factory=dict)


def seeded_subset(dataset: Dataset, size: int, seed: int) -> Dataset:
    """``size`` items (all when fewer) of ``dataset`` drawn without replacement by a generator seeded ``seed``:
    the same items on every machine, in a fixed order."""
    n = len(dataset)  # type: ignore[arg-type]
    index = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[: min(int(size), n)]
    return Subset(dataset, index.tolist())


def stack(dataset: Dataset, batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """Every item of a (small) dataset as two tensors (inputs, labels), in order."""
    inputs, labels = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        inputs.append(x)
        labels.append(torch.as_tensor(y))
    return torch.cat(inputs), torch.cat(labels)


def group_logits(logits: Tensor, groups: Groups | None) -> tuple[Tensor, Tensor]:
    """(group log-probability scores, predicted group) of a batch of model logits.

    Scores: log-sum-exp of each group's logits, so their softmax is the probability mass of each group.
    Prediction: the group of the arg-max over the classes of all groups."""
    if groups is None:
        return logits, logits.argmax(dim=1)
    classes = torch.tensor([c for g in groups for c in g], device=logits.device)
    owner = torch.tensor([k for k, g in enumerate(groups) for _ in g], device=logits.device)
    used = logits.index_select(1, classes)
    predicted = owner[used.argmax(dim=1)]
    scores = torch.stack([torch.logsumexp(logits[:, list(g)], dim=1) for g in groups], dim=1)
    return scores, predicted


@torch.no_grad()
def stream_outcomes(model: nn.Module, evalset: EvalSet, device: torch.device | str = "cpu", batch_size: int = 256,
                    workers: int = 0, progress: Callable[[int], Any] | None = None) -> Outcomes:
    """Per-example (0/1 error, cross-entropy) of ``model`` in eval mode over ``evalset``, read in batches;
    restores the model's mode. ``progress(k)`` is called with the number of items of each batch."""
    was_training = model.training
    model.eval()
    parts = []
    loader = DataLoader(evalset.dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=torch.device(device).type == "cuda")
    for inputs, labels in loader:
        inputs, labels = inputs.to(device, non_blocking=True), torch.as_tensor(labels).long().to(device)
        scores, predicted = group_logits(model(inputs).float(), evalset.label_groups)
        parts.append(Outcomes((predicted != labels).float(), F.cross_entropy(scores, labels, reduction="none")))
        if progress is not None:
            progress(int(labels.shape[0]))
    model.train(was_training)
    return Outcomes.concat(parts)


def stream_errors(model: nn.Module, evalset: EvalSet, device: torch.device | str = "cpu", batch_size: int = 256,
                  workers: int = 0, progress: Callable[[int], Any] | None = None) -> tuple[float, float]:
    """(error rate, mean cross-entropy) of ``model`` over ``evalset``: the means of :func:`stream_outcomes`."""
    return stream_outcomes(model, evalset, device, batch_size, workers, progress).means()


def groups_for(classes: Sequence[int]) -> Groups:
    """Singleton groups: a set whose labels are ``classes`` of the model (e.g. ImageNet-R's 200)."""
    return tuple((int(c),) for c in classes)
