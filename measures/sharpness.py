"""The study's sharpness measures: worst case (APGD-style ascent) and average case (random noise)."""

from __future__ import annotations

from torch import nn

from sharpbench import Execution, MeasureContext, average_case_sharpness, worst_case_sharpness


def worst_case(model: nn.Module, context: MeasureContext, *, rho: float, norm: str, adaptive: bool,
               steps: int = 20, normalize_logits: bool = False, bf16: bool = False, compile: bool = False) -> float:
    """E_S max_{||delta / c||_p <= rho} L_S(w + delta) - L_S(w), each batch its own maximizer."""
    return worst_case_sharpness(model, context.batches, rho=rho, norm=norm, adaptive=adaptive, steps=steps,
                                normalize_logits=normalize_logits, loss_fn=context.loss_fn,
                                execution=Execution(bf16=bf16, compile=compile))


def average_case(model: nn.Module, context: MeasureContext, *, rho: float, norm: str, adaptive: bool,
                 samples: int = 20, normalize_logits: bool = False, bf16: bool = False,
                 compile: bool = False) -> float:
    """E_S E_xi L_S(w + rho c xi) - L_S(w), with `samples` noise draws per batch."""
    return average_case_sharpness(model, context.batches, rho=rho, norm=norm, adaptive=adaptive,
                                  samples=samples, normalize_logits=normalize_logits,
                                  generator=context.generator, loss_fn=context.loss_fn,
                                  execution=Execution(bf16=bf16, compile=compile))
