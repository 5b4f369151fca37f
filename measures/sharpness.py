"""The study's sharpness measures: worst case (APGD-style ascent) and average case (random noise).

Each has a many-model form: same-architecture models of a collection are solved as one batched problem.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from sharpbench import (Execution, MeasureContext, average_case_sharpness_many, computes_many,
                        worst_case_sharpness_many)


def _many(kernel: Callable[..., list[float]]) -> Callable[..., list[float]]:
    """A measure's many-model form over a sharpness kernel: the context's batches, generator and loss."""
    def many(models: list[nn.Module], context: MeasureContext, *, bf16: bool = False, compile: bool = False,
             **options) -> list[float]:
        return kernel(models, context.batches, generator=context.generator, loss_fn=context.loss_fn,
                      execution=Execution(bf16=bf16, compile=compile), **options)
    return many


@computes_many(_many(worst_case_sharpness_many))
def worst_case(model: nn.Module, context: MeasureContext, **params) -> float:
    """E_S max_{||delta / c||_p <= rho} L_S(w + delta) - L_S(w), each batch its own maximizer (parameters:
    rho, norm, adaptive, steps, restarts, normalize_logits, scaling, perturb_norm_layers, perturb_head,
    bf16, compile)."""
    return worst_case.many([model], context, **params)[0]


@computes_many(_many(average_case_sharpness_many))
def average_case(model: nn.Module, context: MeasureContext, **params) -> float:
    """E_S E_xi L_S(w + rho c xi) - L_S(w), with `samples` noise draws per batch (parameters as for the worst
    case, with samples in place of steps and restarts)."""
    return average_case.many([model], context, **params)[0]
