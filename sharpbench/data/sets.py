"""A collection's data as one type, in memory or streamed, and the one way a model is scored on it.

:class:`DatasetSplits` holds the training set, the test set and the OOD sets by the card's names. A dataset that
fits in memory (digits, Fashion-MNIST, CIFAR-10) holds tensors (``TensorDataset``); one too large for memory
(ImageNet, MNLI) holds datasets that read from disk. An OOD set keeps its own labels: ImageNet-R and -A hold 200
of the 1000 classes, HANS has two labels (entailment, non-entailment) for a three-way MNLI model.
``label_groups`` maps each label of a set to the model's classes it stands for, and :func:`score_outcomes`
scores a model the way each benchmark does: the prediction is the group of the arg-max over the classes the set
uses (Hendrycks et al.'s logit mask for ImageNet-R/A, McCoy et al.'s neutral-or-contradiction rule for HANS), and
the loss is the cross-entropy of the group probabilities (log-sum-exp of each group's logits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from sharpbench.cards.schema import Param, positive
from sharpbench.data.outcomes import Outcomes
from sharpbench.losses import LOSSES

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

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    @property
    def in_memory(self) -> bool:
        """True for tensors held in memory (a TensorDataset), False for a dataset read from disk."""
        return isinstance(self.dataset, TensorDataset)


@dataclass(frozen=True)
class DatasetSplits:
    """A collection's training set, test set and OOD sets (by the card's shift names), in memory or streamed."""

    train: Dataset
    test: EvalSet
    ood: dict[str, EvalSet] = field(default_factory=dict)

    @property
    def in_memory(self) -> bool:
        """True when every set holds tensors (the datasets a collection can train on)."""
        return isinstance(self.train, TensorDataset) and all(s.in_memory for s in (self.test, *self.ood.values()))

    def train_tensors(self) -> tuple[Tensor, Tensor]:
        """(inputs, labels) of an in-memory training set."""
        if not isinstance(self.train, TensorDataset):
            raise TypeError("the training set is streamed from disk, not held as tensors")
        inputs, labels = self.train.tensors
        return inputs, labels

    def to(self, device: torch.device | str) -> "DatasetSplits":
        """The same splits with in-memory tensors on ``device`` (streamed sets are moved batch by batch)."""
        return DatasetSplits(_to(self.train, device), EvalSet(_to(self.test.dataset, device), self.test.label_groups),
                             {k: EvalSet(_to(s.dataset, device), s.label_groups) for k, s in self.ood.items()})

    def evaluation_sets(self, train: Dataset | None = None) -> dict[str, EvalSet]:
        """The sets a kept model is scored on, by name: ``train`` (the given train-evaluation set, by default the
        training set), ``test`` and ``ood/<shift>``."""
        return {"train": EvalSet(self.train if train is None else train), "test": self.test,
                **{f"ood/{name}": evalset for name, evalset in self.ood.items()}}


def _to(dataset: Dataset, device: torch.device | str) -> Dataset:
    if isinstance(dataset, TensorDataset) and dataset.tensors[0].device != torch.device(device):
        return TensorDataset(*(t.to(device) for t in dataset.tensors))
    return dataset


def prefix(dataset: TensorDataset, size: int) -> TensorDataset:
    """The first ``size`` items of an in-memory dataset (all when fewer)."""
    return TensorDataset(*(t[:size] for t in dataset.tensors))


def seeded_subset(dataset: Dataset, size: int, seed: int) -> Dataset:
    """``size`` items (all when fewer) of ``dataset`` drawn without replacement by a generator seeded ``seed``:
    the same items on every machine, in a fixed order."""
    n = len(dataset)  # type: ignore[arg-type]
    index = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[: min(int(size), n)]
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(t[index] for t in dataset.tensors))
    return Subset(dataset, index.tolist())


def stack(dataset: Dataset, batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """Every item of a (small) dataset as two tensors (inputs, labels), in order."""
    if isinstance(dataset, TensorDataset):
        inputs, labels = dataset.tensors
        return inputs, labels
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


def groups_for(classes: Sequence[int]) -> Groups:
    """Singleton groups: a set whose labels are ``classes`` of the model (e.g. ImageNet-R's 200)."""
    return tuple((int(c),) for c in classes)


def _batches(evalset: EvalSet, device: torch.device, batch_size: int | None, workers: int):
    """(inputs, labels) batches of a set on ``device``: slices of in-memory tensors (4096 at a time by default),
    or a DataLoader over a streamed dataset (256 by default, ``workers`` reader processes)."""
    dataset = evalset.dataset
    if isinstance(dataset, TensorDataset):
        inputs, labels = dataset.tensors
        step = batch_size or 4096
        for start in range(0, inputs.shape[0], step):
            yield inputs[start:start + step].to(device), labels[start:start + step].to(device)
        return
    loader = DataLoader(dataset, batch_size=batch_size or 256, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    for inputs, labels in loader:
        yield inputs.to(device, non_blocking=True), torch.as_tensor(labels).to(device)


@torch.no_grad()
def score_outcomes(model: nn.Module, evalset: EvalSet, loss: str = "cross_entropy", device: torch.device | str = "cpu",
                   batch_size: int | None = None, workers: int = 0,
                   progress: Callable[[int], Any] | None = None) -> Outcomes:
    """Per-example (error, loss) of ``model`` in eval mode over ``evalset`` (restores the model's mode): the error
    is 0/1 (wrong class or group) for a classification loss and the example's loss itself for a regression loss.
    ``progress(k)`` is called with the number of examples of each batch."""
    per_example, classification = LOSSES[loss].per_example, LOSSES[loss].classification
    device = torch.device(device)
    was_training = model.training
    model.eval()
    parts = []
    for inputs, labels in _batches(evalset, device, batch_size, workers):
        outputs = model(inputs).float()
        if classification:
            scores, predicted = group_logits(outputs, evalset.label_groups)
            labels = labels.long()
            losses = per_example(scores, labels)
            errors = (predicted != labels).float()
        else:
            losses = per_example(outputs, labels)
            errors = losses
        parts.append(Outcomes(errors, losses))
        if progress is not None:
            progress(int(labels.shape[0]))
    model.train(was_training)
    return Outcomes.concat(parts)
