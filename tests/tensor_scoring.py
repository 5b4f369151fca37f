"""Scoring a model on tensors in the tests, through the one scoring path of the package."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from sharpbench.data.outcomes import Outcomes
from sharpbench.data.sets import EvalSet, score_outcomes


def outcomes_on(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "cross_entropy",
                batch_size: int | None = None) -> Outcomes:
    """Per-example outcomes of ``model`` on (x, y)."""
    return score_outcomes(model, EvalSet(TensorDataset(x, y)), loss, x.device, batch_size=batch_size)


def errors_on(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "cross_entropy") -> tuple[float, float]:
    """(error, mean loss) of ``model`` on (x, y)."""
    return outcomes_on(model, x, y, loss).means()
