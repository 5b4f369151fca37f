"""Effective dimensionality of the loss Hessian (Maddox, Benton and Wilson, 2020): N_eff(H, z) = sum_i lambda_i /
(lambda_i + z) over the Ritz values of a k-step Lanczos run on H, as the authors compute it.

H is the Hessian of the mean loss over the sharpness points with respect to every trainable parameter
(`hessian_operator`, as for hessian-max-eigenvalue). The Lanczos run is GPyTorch's `lanczos_tridiag` (now in
linear_operator), the routine the authors' code (github.com/g-benton/hessian-eff-dim, hess/hessians.py) calls: k
Hessian-vector products with full reorthogonalization, and the eigenvalues of the k x k tridiagonal matrix.
"""

from __future__ import annotations

import numpy as np
import torch
from linear_operator.utils.lanczos import lanczos_tridiag
from torch import nn

from sharpbench import MeasureContext
from sharpbench_measures.curvature import forward_mode_ad, hessian_operator


def effective_dimensionality(eigenvalues: np.ndarray, z: float) -> float:
    """sum_i lambda_i / (lambda_i + z), with negative eigenvalues counted as 0: a direction of negative curvature is
    not one the data determine, and lambda_i + z could vanish for it."""
    if z <= 0:
        raise ValueError(f"z must be > 0, got {z}")
    positive = np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None)
    return float(np.sum(positive / (positive + z)))


def ritz_values(model: nn.Module, context: MeasureContext, k: int) -> np.ndarray:
    """The Ritz values of k Lanczos steps on H from a start vector drawn from the run's generator (fewer where
    the Krylov space closes earlier, all of H's eigenvalues where k reaches its size), in float64."""
    operator = hessian_operator(model, context)
    size = operator.shape[0]
    start = torch.randn(size, 1, generator=context.generator, device=context.generator.device,
                        dtype=torch.float64).to(device=operator.device, dtype=operator.dtype)
    with forward_mode_ad():
        _, tridiagonal = lanczos_tridiag(lambda v: operator @ v, k, operator.dtype, operator.device, (size, size),
                                         init_vecs=start)
    return torch.linalg.eigvalsh(tridiagonal.double().cpu()).numpy()


def effective_dimension(model: nn.Module, context: MeasureContext, *, z: float = 1.0, k: int = 100) -> float:
    """N_eff(H, z) over the Ritz values of k Lanczos steps on the loss Hessian H (Maddox et al., 2020): how many
    directions have curvature large against z; fewer is predicted to generalize better."""
    if z <= 0:
        raise ValueError(f"z must be > 0, got {z}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return effective_dimensionality(ritz_values(model, context, k), z)
