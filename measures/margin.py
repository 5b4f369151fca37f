"""Output-margin baseline: how far the training points are from the decision boundary, in logits."""

from __future__ import annotations

import torch
from torch import nn

from sharpbench import MeasureContext


def margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """z_y - max_{j != y} z_j for each row: positive where the point is classified correctly."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true - others.max(dim=1).values


def require_classifier(context: MeasureContext, what: str) -> None:
    """NotImplementedError naming `what` where the model has a single output (a regression: no margin)."""
    if context.num_classes < 2:
        raise NotImplementedError(f"{what} needs a classifier, and this model has {context.num_classes} output "
                                  f"(a regression)")


def output_margin(model: nn.Module, context: MeasureContext, *, percentile: float = 10.0) -> float:
    """The `percentile`-th percentile (linear interpolation) of the margins over the sharpness points."""
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    require_classifier(context, "the output margin z_y - max_(j != y) z_j")
    with torch.no_grad():
        values = torch.cat([margins(model(inputs), labels).double() for inputs, labels in context.batches])
    return torch.quantile(values.cpu(), percentile / 100).item()
