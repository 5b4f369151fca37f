"""Keskar et al.'s sharpness: the largest loss increase over the box |delta_i| <= rho (|w_i| + 1), relative to
1 + loss."""

from __future__ import annotations

import torch
from torch import nn

from sharpbench import FlatModel, MeasureContext, worst_case_sharpness


def keskar_sharpness(model: nn.Module, context: MeasureContext, *, rho: float = 0.001, steps: int = 20) -> float:
    """E_S [max_{|delta_i| <= rho (|w_i| + 1)} L_S(w + delta) - L_S(w)] / (1 + E_S L_S(w)), by the study's ascent."""
    scale = FlatModel.of(model).w0.abs() + 1
    increase = worst_case_sharpness(model, context.batches, rho=rho, norm="linf", steps=steps,
                                    loss_fn=context.loss_fn, scale=scale)
    with torch.no_grad():
        loss = torch.stack([context.loss_fn(model(inputs), labels).double() for inputs, labels in context.batches])
    return increase / (1 + loss.mean().item())
