"""The loss that sharpness is measured on, and the study's logit normalization."""

from __future__ import annotations

from typing import Callable

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
