"""The study's sharpness measures: worst case (APGD-style ascent) and average case (random noise).

Each has a many-model form: same-architecture models of a collection are solved as one batched problem.
"""

from __future__ import annotations

from torch import nn

from sharpbench import (Execution, MeasureContext, average_case_sharpness_many, computes_many,
                        worst_case_sharpness_many)


def _worst_case_many(models: list[nn.Module], context: MeasureContext, *, bf16: bool = False,
                     compile: bool = False, **options) -> list[float]:
    return worst_case_sharpness_many(models, context.batches, generator=context.generator,
                                     loss_fn=context.loss_fn, execution=Execution(bf16=bf16, compile=compile),
                                     **options)


@computes_many(_worst_case_many)
def worst_case(model: nn.Module, context: MeasureContext, **params) -> float:
    """E_S max_{||delta / c||_p <= rho} L_S(w + delta) - L_S(w), each batch its own maximizer (parameters:
    rho, norm, adaptive, steps, restarts, normalize_logits, scaling, perturb_norm_layers, perturb_head,
    bf16, compile)."""
    return _worst_case_many([model], context, **params)[0]


def _average_case_many(models: list[nn.Module], context: MeasureContext, *, bf16: bool = False,
                       compile: bool = False, **options) -> list[float]:
    return average_case_sharpness_many(models, context.batches, generator=context.generator,
                                       loss_fn=context.loss_fn, execution=Execution(bf16=bf16, compile=compile),
                                       **options)


@computes_many(_average_case_many)
def average_case(model: nn.Module, context: MeasureContext, **params) -> float:
    """E_S E_xi L_S(w + rho c xi) - L_S(w), with `samples` noise draws per batch (parameters as for the worst
    case, with samples in place of steps and restarts)."""
    return _average_case_many([model], context, **params)[0]
