"""Norm-based baselines: functions of the weights alone."""

from __future__ import annotations

import torch
from torch import nn

from sharpbench import MeasureContext


def param_norm(model: nn.Module, context: MeasureContext) -> float:
    """||w||_2 over every trainable parameter (weights, biases, norm-layer affine parameters)."""
    del context  # the weights alone decide it
    with torch.no_grad():
        squares = [p.double().square().sum() for p in model.parameters() if p.requires_grad]
        return torch.stack(squares).sum().sqrt().item()
