"""Disagreement (Jiang, Nagarajan, Baek and Kolter, ICLR 2022): how often a model and models of its configuration
trained from other seeds predict different classes on unlabeled test inputs, which estimates its test error when
the ensemble is calibrated class-wise (their Generalization Disagreement Equality). It reads the test inputs (not
their labels) and other models: its card declares both, and the leaderboard ranks it apart."""

from __future__ import annotations

import torch
from torch import nn

from sharpbench import MeasureContext


def _predictions(model: nn.Module, inputs: list[torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x).argmax(dim=-1) for x in inputs])


def disagreement(model: nn.Module, context: MeasureContext) -> float:
    """The mean over the model's siblings h' of Dis(h, h') = P_x[argmax h(x) != argmax h'(x)] on the test inputs
    (Jiang et al. 2022, Definition 2.1, estimated on the n test inputs of the context)."""
    if context.num_classes < 2:
        raise NotImplementedError("disagreement compares predicted classes: it needs a classifier, and this model "
                                  "is a regression")
    if not context.siblings or not context.test_inputs:
        raise ValueError("disagreement needs the context's siblings and test inputs: its card declares "
                         "uses: [test_inputs, other_models]")
    own = _predictions(model, context.test_inputs)
    rates = [(own != _predictions(sibling, context.test_inputs)).double().mean() for sibling in context.siblings]
    return torch.stack(rates).mean().item()
