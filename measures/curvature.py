"""Curvature baselines on the sharpness batches: the Hessian's top eigenvalue and trace, and the Fisher-Rao norm.

The Hessian is the one of the mean loss over all n sharpness points (each batch weighted by its size), with
respect to every trainable parameter; curvlinops gives it as a linear operator of Hessian-vector products.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Callable, Iterator

import torch
from curvlinops import HessianLinearOperator, hutchinson_trace
from scipy.sparse.linalg import eigsh
from torch import nn
from torch.func import functional_call, jvp, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from sharpbench import MeasureContext

# Hutchinson probes per operator product: curvlinops multiplies a block of probes at once (vmapped over the
# probes), so the block bounds the memory of one product at this many Hessian-vector products.
_PROBES_PER_PRODUCT = 10
# Lanczos vectors kept between ARPACK's restarts: for the top eigenvalue of the digits-mlp Hessians 6 needed 7 to 10
# Hessian-vector products at tol 1e-3, against 21 with scipy's default of 20 (which fills all 20 before its first
# convergence check); the eigenvalue agreed to 1e-6.
_LANCZOS_VECTORS = 6


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


def hessian_operator(model: nn.Module, context: MeasureContext) -> HessianLinearOperator:
    """The Hessian of the mean loss over the sharpness points w.r.t. the trainable parameters, as an operator."""
    params = [p for p in model.parameters() if p.requires_grad]
    # Eval mode and fixed batches make every pass deterministic, so curvlinops' probe of that is skipped.
    return HessianLinearOperator(model, _MeanLoss(context.loss_fn), params, context.batches,
                                 check_deterministic=False, num_data=sum(len(y) for _, y in context.batches))


def _seed_from(generator: torch.Generator) -> int:
    return int(torch.randint(2**62, (1,), generator=generator, device=generator.device))


def hessian_trace(model: nn.Module, context: MeasureContext, *, probes: int = 50) -> float:
    """Hutchinson's estimate of tr(H): the mean of v^T H v over `probes` Rademacher vectors v."""
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    operator = hessian_operator(model, context)
    device = context.device
    # curvlinops draws its probes from the global generator: seed it from the measure's generator inside a fork,
    # so the value is reproducible and the caller's random state is left as it was.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), forward_mode_ad():
        torch.manual_seed(_seed_from(context.generator))
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, probes, _PROBES_PER_PRODUCT):
            block = min(_PROBES_PER_PRODUCT, probes - start)
            total += hutchinson_trace(operator, block).double().cpu() * block
    return (total / probes).item()


def hessian_max_eigenvalue(model: nn.Module, context: MeasureContext, *, tol: float = 1e-3) -> float:
    """The largest (algebraic) eigenvalue of H, by Lanczos iteration on Hessian-vector products (ARPACK)."""
    operator = hessian_operator(model, context)
    start = torch.randn(operator.shape[0], generator=context.generator, device=context.generator.device,
                        dtype=torch.float64)
    with forward_mode_ad():
        eigenvalues = eigsh(operator.to_scipy(), k=1, which="LA", tol=tol, v0=start.cpu().numpy(),
                            ncv=min(_LANCZOS_VECTORS, operator.shape[0]), return_eigenvectors=False)
    return float(eigenvalues[0])


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
