"""Fisher-normalized sharpness: the trace of the loss Hessian measured in the Fisher metric, tr(F^-1 H).

Kristiadi, Dangel and Hennig (NeurIPS 2023) show that the eigenvalues, trace and determinant of the Hessian are
invariant under reparametrization once the Hessian is read with the metric G of the parameter space, as the
(1,1)-tensor G^-1 H, rather than with an implicit identity metric. Here G is the Fisher information F of the
model's predictive distribution, the metric that moves with the network under any reparametrization: where a
reparametrization has Jacobian A, F becomes A^T F A and, at a critical point of the loss (everywhere for a linear
reparametrization), H becomes A^T H A, so the eigenvalues of F^-1 H, and their sum, are unchanged.

H is measures/curvature.py's Hessian of the mean loss over the n sharpness points (each batch weighted by its
size) with respect to every trainable parameter; F is the generalized Gauss-Newton matrix of that same loss
(curvlinops' GGNLinearOperator), which is the Fisher information of the model's predictive distribution for
cross-entropy (categorical) and for squared error (Gaussian). F has rank at most n x outputs, and is singular on
any network with a symmetry (ReLU rescalings, the softmax's shift), so F^-1 does not exist: the measure takes F's
damped pseudo-inverse F (F + delta I)^-2, which tends to F^+ as delta -> 0 and, unlike (F + delta I)^-1, gives no
weight 1 / delta to the directions that leave every prediction unchanged (on digits-mlp, (F + delta I)^-1 made the
value the difference of two terms ten times its size, and Hutchinson's estimate varied by up to 120% between seeds).
"""

from __future__ import annotations

import warnings

import torch
from curvlinops import GGNLinearOperator
from linear_operator.utils.linear_cg import linear_cg
from linear_operator.utils.warnings import NumericalWarning
from scipy.sparse.linalg import ArpackError
from torch import nn

from sharpbench import MeasureContext, MeasureError
from sharpbench_measures.curvature import (PROBES_PER_PRODUCT, fisher_operator, forward_mode_ad, hessian_operator,
                                           top_eigenvalues)

# Conjugate-gradient iterations allowed per solve with F + delta I. They grow about as sqrt(lambda_max / delta) =
# sqrt(1 / damping): at the default damping and tol a solve took 19 to 23 on digits-mlp models (53 to 70 at damping
# 1e-3); the cap only stops a solve that would not converge (then the measure fails and says so).
_MAX_CG_ITERATIONS = 1000


def _fisher_top_eigenvalue(fisher: GGNLinearOperator, generator: torch.Generator, tol: float) -> float:
    """lambda_max(F) by Lanczos iteration (ARPACK) from a start vector drawn from `generator`; 0 where F is zero."""
    try:
        return float(top_eigenvalues(fisher, generator, 1, tol)[0])
    except ArpackError as error:
        if "error -9:" not in str(error):     # ARPACK's -9 (scipy keeps no code): F maps the start vector to 0
            raise
        return 0.0


def _damped_solve(fisher: GGNLinearOperator, top: float, damping: float, tol: float,
                  rhs: torch.Tensor) -> torch.Tensor:
    """(F + delta I)^-1 rhs, delta = damping * top, by conjugate gradients to a mean relative residual of `tol`.

    curvlinops' CGInverseLinearOperator runs this same CG (GPyTorch's linear_cg) on an operator without damping; the
    closure adds it, and scales the system by 1 / top, so that its spectrum lies in [damping, 1 + damping] whatever
    the scale of F: linear_cg's guards against dividing by zero are absolute (eps), set here below what `tol` needs.
    """
    with warnings.catch_warnings():
        # linear_cg only warns when it stops short of the tolerance: make that an error.
        warnings.simplefilter("error", NumericalWarning)
        try:
            return linear_cg(lambda x: (fisher @ x) / top + damping * x, rhs, tolerance=tol,
                             max_iter=_MAX_CG_ITERATIONS, eps=1e-3 * damping * tol ** 2,
                             stop_updating_after=tol / 10) / top
        except NumericalWarning as warning:
            raise MeasureError(f"conjugate gradients on F + delta I did not reach tol={tol:g} in "
                               f"{_MAX_CG_ITERATIONS} iterations at damping={damping:g} ({warning}); a larger damping "
                               f"conditions the system better") from None


def fisher_normalized_sharpness(model: nn.Module, context: MeasureContext, *, damping: float = 1e-2,
                                probes: int = 10, tol: float = 1e-3) -> float:
    """tr(F (F + delta I)^-2 H), delta = damping * lambda_max(F): the trace of the Hessian in the Fisher metric, with
    F's damped pseudo-inverse for the inverse metric. Hutchinson's estimate over `probes` Rademacher vectors v of
    (F u)^T w with u = (F + delta I)^-1 v and w = (F + delta I)^-1 H v, both by conjugate gradients to a mean
    relative residual of `tol`; with probes >= the number of parameters, the exact trace over the standard basis.
    lambda_max(F) is found by Lanczos (ARPACK) to relative tolerance `tol`."""
    if not damping > 0:
        raise ValueError(f"damping must be > 0 (the Fisher of an over-parametrized network is singular), got {damping}")
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    if not 0 < tol < 1:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    hessian = hessian_operator(model, context)
    fisher = fisher_operator(model, context)
    generator = context.generator
    top = _fisher_top_eigenvalue(fisher, generator, tol)
    if not top > 0:
        raise MeasureError(f"the Fisher information is zero on the sharpness points (lambda_max = {top:.3g}): the "
                           f"model's outputs do not move with its parameters there, so F^-1 H is undefined")
    dim = fisher.shape[0]
    exact = probes >= dim
    count = dim if exact else probes
    dtype = next(p for p in model.parameters() if p.requires_grad).dtype
    total = torch.zeros((), dtype=torch.float64)
    with forward_mode_ad():
        for first in range(0, count, PROBES_PER_PRODUCT):
            block = min(PROBES_PER_PRODUCT, count - first)
            if exact:
                vectors = torch.zeros(dim, block, dtype=dtype, device=context.device)
                vectors[first + torch.arange(block), torch.arange(block)] = 1
            else:
                vectors = (torch.randint(0, 2, (dim, block), generator=generator, device=generator.device)
                           .to(device=context.device, dtype=dtype) * 2 - 1)
            # v^T (F + delta I)^-1 F (F + delta I)^-1 H v as (F u)^T w: F u has no part in F's null space, where u and w
            # carry their 1 / delta, so no large terms cancel.
            u = _damped_solve(fisher, top, damping, tol, vectors)
            w = _damped_solve(fisher, top, damping, tol, hessian @ vectors)
            total += ((fisher @ u) * w).double().sum().cpu()
    return (total if exact else total / count).item()
