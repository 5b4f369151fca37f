"""Loss-based baselines, taken on the fixed sharpness batches of the training set."""

from __future__ import annotations

import torch
from torch import nn

from sharpbench import MeasureContext


def train_loss(model: nn.Module, context: MeasureContext) -> float:
    """Mean loss over the sharpness batches (n training points), each batch weighted by its size."""
    total, count = torch.zeros((), dtype=torch.float64), 0
    with torch.no_grad():
        for inputs, labels in context.batches:
            total += context.loss_fn(model(inputs), labels).double().cpu() * len(labels)
            count += len(labels)
    return (total / count).item()
