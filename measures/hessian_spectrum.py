"""Two members of the universal class of Hessian sharpness measures of Tahmasebi, Soleymani, Bahri, Jegelka and
Jaillet (ICML 2024): the Frobenius norm of the loss Hessian, the measure Frob-SAM minimizes, and the (log-)
determinant, the measure Det-SAM minimizes.

The Hessian H is measures/curvature.py's: that of the mean loss over all n sharpness points (each batch weighted by
its size) with respect to every trainable parameter, as a curvlinops operator of Hessian-vector products.
"""

from __future__ import annotations

import math

import numpy as np
from curvlinops import hutchinson_squared_fro
from torch import nn

from sharpbench import MeasureContext
from sharpbench_measures.curvature import hessian_operator, hutchinson_mean, top_eigenvalues


def hessian_frobenius_norm(model: nn.Module, context: MeasureContext, *, probes: int = 50) -> float:
    """||H||_F = sqrt(sum_i lambda_i^2), from Hutchinson's estimate of ||H||_F^2: the mean of ||H v||^2 over `probes`
    Rademacher vectors v (curvlinops' hutchinson_squared_fro), the all-eigenvalue sharpness Frob-SAM minimizes."""
    # Each ||H v||^2 is a sum of squares, so the estimate is never negative and its square root needs no clipping.
    return math.sqrt(hutchinson_mean(hutchinson_squared_fro, hessian_operator(model, context), context, probes))


def hessian_logdet(model: nn.Module, context: MeasureContext, *, k: int = 10, eps: float = 1e-6,
                   tol: float = 1e-3) -> float:
    """sum_{i<=k} log(max(lambda_i, 0) + eps) over the k largest eigenvalues lambda_1 >= ... >= lambda_k of H: the
    log-determinant of H's positive part on its top-k eigenspace, regularized by eps (Det-SAM's det(H), which is
    undefined as a log for the singular, indefinite Hessians of networks), by Lanczos iteration (ARPACK)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0 (it keeps the log finite where an eigenvalue is <= 0), got {eps}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    operator = hessian_operator(model, context)
    dim = operator.shape[0]
    if k >= dim:
        raise ValueError(f"k must be smaller than the number of trainable parameters ({dim}), got {k}")
    eigenvalues = top_eigenvalues(operator, context.generator, k, tol)
    return float(np.log(np.clip(eigenvalues, 0.0, None) + eps).sum())
