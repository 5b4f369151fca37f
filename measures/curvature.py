"""Curvature baselines on the sharpness batches: the Hessian's top eigenvalue and trace, and the Fisher-Rao norm;
and the curvature operators, Hutchinson means and top eigenvalues that the other curvature measures share.

The Hessian is the one of the mean loss over all n sharpness points (each batch weighted by its size), with
respect to every trainable parameter; curvlinops gives it as a linear operator of Hessian-vector products.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Callable, Iterator, TypeVar

import numpy as np
import torch
from curvlinops import GGNLinearOperator, HessianLinearOperator, hutchinson_trace
from scipy.sparse.linalg import eigsh
from torch import nn
from torch.func import functional_call, jvp, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from sharpbench import MeasureContext

# Hutchinson probes per operator product: curvlinops multiplies a block of probes at once (vmapped over the
# probes), so the block bounds the memory of one product at this many Hessian-vector products.
PROBES_PER_PRODUCT = 10
# Lanczos vectors kept between ARPACK's restarts: for the top eigenvalue of the digits-mlp Hessians 6 needed 7 to 10
# Hessian-vector products at tol 1e-3, against 21 with scipy's default of 20 (which fills all 20 before its first
# convergence check); the eigenvalue agreed to 1e-6.
_LANCZOS_VECTORS = 6

_Operator = TypeVar("_Operator", HessianLinearOperator, GGNLinearOperator)


class _MeanLoss(nn.Module):
    """The context's mean loss as the module curvlinops expects (it reads `reduction` to weight batches)."""

    reduction = "mean"

    def __init__(self, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.loss_fn = loss_fn

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(logits, labels)


@contextmanager
def forward_mode_ad() -> Iterator[None]:
    """Attention through the math kernel: the fused scaled-dot-product kernels have no forward-mode derivative,
    which Hessian-vector products (forward over reverse) and the Fisher-Rao directional derivatives need."""
    with sdpa_kernel(SDPBackend.MATH):
        yield


def _curvature_operator(kind: type[_Operator], model: nn.Module, context: MeasureContext) -> _Operator:
    """A curvlinops operator of the mean loss over the sharpness points w.r.t. the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    # Eval mode and fixed batches make every pass deterministic, so curvlinops' probe of that is skipped.
    return kind(model, _MeanLoss(context.loss_fn), params, context.batches, check_deterministic=False,
                num_data=sum(len(y) for _, y in context.batches))


def hessian_operator(model: nn.Module, context: MeasureContext) -> HessianLinearOperator:
    """The Hessian of the mean loss over the sharpness points w.r.t. the trainable parameters, as an operator."""
    return _curvature_operator(HessianLinearOperator, model, context)


def fisher_operator(model: nn.Module, context: MeasureContext) -> GGNLinearOperator:
    """The Fisher information of the same loss, as its generalized Gauss-Newton operator (the Fisher of the
    predictive distribution for cross-entropy and for squared error)."""
    return _curvature_operator(GGNLinearOperator, model, context)


def _seed_from(generator: torch.Generator) -> int:
    return int(torch.randint(2**62, (1,), generator=generator, device=generator.device))


def hutchinson_mean(estimator: Callable[[_Operator, int], torch.Tensor], operator: _Operator,
                    context: MeasureContext, probes: int) -> float:
    """The mean of a curvlinops Hutchinson estimator (hutchinson_trace, hutchinson_squared_fro) over `probes`
    Rademacher probes, multiplied in blocks of PROBES_PER_PRODUCT."""
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    device = context.device
    # curvlinops draws its probes from the global generator: seed it from the measure's generator inside a fork,
    # so the value is reproducible and the caller's random state is left as it was.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), forward_mode_ad():
        torch.manual_seed(_seed_from(context.generator))
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, probes, PROBES_PER_PRODUCT):
            block = min(PROBES_PER_PRODUCT, probes - start)
            total += estimator(operator, block).double().cpu() * block
    return (total / probes).item()


def top_eigenvalues(operator: _Operator, generator: torch.Generator, k: int, tol: float) -> np.ndarray:
    """The k algebraically largest eigenvalues of a symmetric operator, largest first, in float64 (all of them
    where it has no more than k rows): Lanczos iteration (ARPACK) from a start vector drawn from `generator`."""
    size = operator.shape[0]
    # ARPACK keeps more Lanczos vectors than eigenvalues (at least 2k + 1; _LANCZOS_VECTORS for the top one):
    # where the operator is not larger than that, its dense matrix costs no more products and is exact.
    vectors = max(_LANCZOS_VECTORS if k == 1 else 0, 2 * k + 1)
    with forward_mode_ad():
        if size <= vectors:
            identity = torch.eye(size, dtype=operator.dtype, device=operator.device)
            dense = (operator @ identity).detach().double().cpu().numpy()
            return np.sort(np.linalg.eigvalsh((dense + dense.T) / 2))[::-1][:k].copy()
        start = torch.randn(size, generator=generator, device=generator.device, dtype=torch.float64)
        eigenvalues = eigsh(operator.to_scipy(), k=k, which="LA", tol=tol, v0=start.cpu().numpy(), ncv=vectors,
                            return_eigenvectors=False)
    return np.sort(eigenvalues.astype(np.float64))[::-1]


def hessian_trace(model: nn.Module, context: MeasureContext, *, probes: int = 50) -> float:
    """Hutchinson's estimate of tr(H): the mean of v^T H v over `probes` Rademacher vectors v."""
    return hutchinson_mean(hutchinson_trace, hessian_operator(model, context), context, probes)


def hessian_max_eigenvalue(model: nn.Module, context: MeasureContext, *, tol: float = 1e-3) -> float:
    """The largest (algebraic) eigenvalue of H, by Lanczos iteration on Hessian-vector products (ARPACK)."""
    return float(top_eigenvalues(hessian_operator(model, context), context.generator, 1, tol)[0])


def fisher_rao_norm(model: nn.Module, context: MeasureContext) -> float:
    """sqrt(mean_i <w, grad_w l(f_w(x_i), y_i)>^2) over the sharpness points: the empirical Fisher-Rao norm.

    Each <w, grad l_i> is a directional derivative along w itself, so one forward-mode pass per batch gives
    them all (no per-example gradients are formed).
    """
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}

    def example_losses(weights: dict[str, torch.Tensor], inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of each example at `weights` (the context's mean loss taken over one example at a time)."""
        logits = functional_call(model, weights, (inputs,))
        return vmap(lambda z, y: context.loss_fn(z[None], y[None]))(logits, labels)

    total, count = torch.zeros((), dtype=torch.float64), 0
    with torch.no_grad(), forward_mode_ad():
        for inputs, labels in context.batches:
            _, along_w = jvp(partial(example_losses, inputs=inputs, labels=labels), (params,), (params,))
            total += along_w.double().square().sum().cpu()
            count += len(labels)
    return (total / count).sqrt().item()
