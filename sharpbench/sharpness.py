"""Worst-case and average-case sharpness of a model over m-sharpness batches (the study's definitions).

Each batch gets its own maximizer (or its own noise draws) and the value is the mean over batches of the
raw loss increase: not divided by rho, not normalized by the loss. The model is only read: the kernels
evaluate it functionally at perturbed parameters.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from sharpbench.ascent import WorstCaseConfig, average_case_increase, worst_case_increase
from sharpbench.flat import FlatModel
from sharpbench.losses import LossFn, cross_entropy, with_normalized_logits
from sharpbench.perturb import scale_vector

Batch = tuple[torch.Tensor, torch.Tensor]


def _objectives(model: nn.Module, batches: Sequence[Batch], loss_fn: LossFn, normalize_logits: bool):
    """For each batch, the loss as a function of the flat perturbation; plus the flat model."""
    flat = FlatModel.of(model)
    loss = with_normalized_logits(loss_fn) if normalize_logits else loss_fn

    def objective_for(inputs: torch.Tensor, labels: torch.Tensor):
        return lambda delta: loss(flat.logits(flat.w0 + delta, inputs), labels)

    return flat, [objective_for(inputs, labels) for inputs, labels in batches]


def worst_case_sharpness(model: nn.Module, batches: Sequence[Batch], *, rho: float, norm: str = "linf",
                         adaptive: bool = True, steps: int = 20, normalize_logits: bool = False,
                         loss_fn: LossFn = cross_entropy) -> float:
    """E_S [max_{||delta / c||_p <= rho} L_S(w + delta) - L_S(w)] over the given batches."""
    config = WorstCaseConfig(rho=rho, norm=norm, steps=steps)
    flat, objectives = _objectives(model, batches, loss_fn, normalize_logits)
    c = scale_vector(flat.w0, adaptive)
    increases = [worst_case_increase(objective, c, config)[0] for objective in objectives]
    return torch.stack(increases).mean().item()


def average_case_sharpness(model: nn.Module, batches: Sequence[Batch], *, rho: float, norm: str = "l2",
                           adaptive: bool = True, samples: int = 20, normalize_logits: bool = False,
                           generator: torch.Generator | None = None, loss_fn: LossFn = cross_entropy) -> float:
    """E_S E_xi [L_S(w + rho c xi) - L_S(w)], xi ~ N(0, I) ("l2") or U[-1, 1] ("linf")."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    flat, objectives = _objectives(model, batches, loss_fn, normalize_logits)
    c = scale_vector(flat.w0, adaptive)
    if generator is None:
        generator = torch.Generator(device=flat.w0.device).manual_seed(0)
    increases = [average_case_increase(objective, c, rho, norm, samples, generator) for objective in objectives]
    return torch.stack(increases).mean().item()
