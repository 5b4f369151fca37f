"""Effective dimensionality of the loss Hessian (Maddox, Benton and Wilson, 2020): N_eff(H, z) = sum_i lambda_i /
(lambda_i + z) over the k largest eigenvalues of H, the number of parameter directions the data determine.

H is the Hessian of the mean loss over the sharpness points with respect to every trainable parameter
(`hessian_operator`, as for hessian-max-eigenvalue); its top k eigenvalues come from implicitly restarted Lanczos
(scipy's ARPACK eigsh) on curvlinops' Hessian-vector products.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from sharpbench import MeasureContext
from sharpbench_measures.curvature import hessian_operator, top_eigenvalues


def effective_dimensionality(eigenvalues: np.ndarray, z: float) -> float:
    """sum_i lambda_i / (lambda_i + z), with negative eigenvalues counted as 0: a direction of negative curvature is
    not one the data determine, and lambda_i + z could vanish for it."""
    if z <= 0:
        raise ValueError(f"z must be > 0, got {z}")
    positive = np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None)
    return float(np.sum(positive / (positive + z)))


def effective_dimension(model: nn.Module, context: MeasureContext, *, z: float = 1.0, k: int = 100,
                        tol: float = 1e-3) -> float:
    """N_eff(H, z) over the top k eigenvalues of the loss Hessian H (Maddox et al., 2020): how many directions have
    curvature large against z; fewer is predicted to generalize better."""
    if z <= 0:
        raise ValueError(f"z must be > 0, got {z}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if tol <= 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    return effective_dimensionality(top_eigenvalues(hessian_operator(model, context), context.generator, k, tol), z)
