"""The losses that models are trained and sharpness is measured on (a batch mean, and per example), and the
study's logit normalization."""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the batch, the loss L_S of the study."""
    return F.cross_entropy(logits, labels)


def normalize_logits(logits: torch.Tensor) -> torch.Tensor:
    """z -> (z - mean(z)) / max(||z - mean(z)||_2, 1e-10), per example: removes the output's scale."""
    centered = logits - logits.mean(dim=-1, keepdim=True)
    return centered / centered.norm(dim=-1, keepdim=True).clamp_min(1e-10)


def with_normalized_logits(loss_fn: LossFn) -> LossFn:
    """The same loss, taken on normalized logits."""
    return lambda logits, labels: loss_fn(normalize_logits(logits), labels)


def mean_squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of (f(x) - y)^2 over the batch, for one regression output of shape (N, 1) or (N,)."""
    return (outputs.reshape(targets.shape) - targets).square().mean()


def cross_entropy_per_example(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The cross-entropy of each example (their mean is :func:`cross_entropy`)."""
    return F.cross_entropy(logits, labels, reduction="none")


def squared_error_per_example(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The squared error of each example (their mean is :func:`mean_squared_error`)."""
    return (outputs.reshape(targets.shape) - targets).square().reshape(targets.shape[0], -1).mean(dim=1)


class Loss(NamedTuple):
    """A collection's loss: the batch mean that is trained and measured, the same loss per example (torch.vmap of
    the mean over single examples would be exact too, but cross-entropy has no batching rule and runs 6x slower),
    and whether the error is the classification error (else it is the example's loss itself)."""

    mean: LossFn
    per_example: LossFn
    classification: bool


LOSSES: dict[str, Loss] = {
    "cross_entropy": Loss(cross_entropy, cross_entropy_per_example, True),
    "mse": Loss(mean_squared_error, squared_error_per_example, False),
}
