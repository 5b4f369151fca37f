"""The two sharpness kernels of the study: the worst-case maximizer and the average-case sampler.

Both work on one flat perturbation vector `delta` of the trainable parameters and an `objective`
delta -> loss on one batch. The worst case is the study's APGD-style ascent, run on u = delta / c (see perturb), with the
reference code's defects fixed: the
loss of each iterate comes from the same forward pass that gives its gradient, the best point and its
gradient are tracked on the device with `torch.where` (no host synchronisation, no state-dict copies), and
after a step-size halving the ascent really continues from the best point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch.func import grad_and_value

from sharpbench.perturb import ascent_step, check_norm, project, sample_noise

Objective = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class WorstCaseConfig:
    """Parameters of the worst-case ascent (the scale vector c is given separately); defaults are the study's."""

    rho: float
    norm: str = "linf"
    steps: int = 20
    momentum: float = 0.75
    min_improvement_ratio: float = 0.75

    def __post_init__(self) -> None:
        check_norm(self.norm)
        if not self.rho > 0:
            raise ValueError(f"rho must be > 0, got {self.rho}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


def apgd_checkpoints(steps: int) -> frozenset[int]:
    """Iterations after which APGD may halve its step: ceil(p_j * steps), p_0 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) (for 20 steps: 5, 9, 12, 15, 16, 18, 19)."""
    fractions, points = [0.0, 0.22], [0, math.ceil(0.22 * steps)]
    while points[-1] < steps and points[-1] != points[-2]:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06))
        points.append(math.ceil(fractions[-1] * steps))
    return frozenset(point for point in points[1:] if point < steps)


def worst_case_increase(objective: Objective, c: torch.Tensor,
                        config: WorstCaseConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """max over the set of objective(delta) - objective(0), as the best of the ascent's iterates (>= 0),
    and the best perturbation found. Cost: `steps` forward+backward passes and one forward pass.
    """
    value_and_grad = grad_and_value(objective)
    checkpoints = apgd_checkpoints(config.steps)

    delta = torch.zeros_like(c)
    grad, loss = value_and_grad(delta)
    initial_loss = loss.detach()
    previous = delta
    best_loss, best_delta, best_grad = initial_loss, delta, grad
    step_size = torch.tensor(2 * config.rho, dtype=c.dtype, device=c.device)
    improvements = torch.zeros((), device=c.device)
    last_checkpoint, step_at_checkpoint, best_at_checkpoint = 0, step_size, best_loss

    for i in range(config.steps):
        target = project(delta + ascent_step(grad, c, step_size, config.norm), c, config.rho, config.norm)
        # Both terms lie in the convex set, so their average does too.
        delta, previous = config.momentum * target + (1 - config.momentum) * previous, delta
        if i == config.steps - 1:
            loss = objective(delta).detach()
        else:
            grad, loss = value_and_grad(delta)
        improved = loss > best_loss
        best_loss = torch.where(improved, loss, best_loss)
        best_delta = torch.where(improved, delta, best_delta)
        best_grad = torch.where(improved, grad, best_grad)
        improvements = improvements + improved

        if i in checkpoints:
            too_few = improvements < config.min_improvement_ratio * (i - last_checkpoint)
            stalled = (step_at_checkpoint == step_size) & (best_at_checkpoint == best_loss)
            halve = too_few | stalled
            last_checkpoint, step_at_checkpoint, best_at_checkpoint = i, step_size, best_loss
            improvements = torch.zeros_like(improvements)
            step_size = torch.where(halve, step_size / 2, step_size)
            # Restart from the best point, with its gradient and no momentum from the abandoned path.
            delta = torch.where(halve, best_delta, delta)
            previous = torch.where(halve, best_delta, previous)
            grad = torch.where(halve, best_grad, grad)

    return best_loss - initial_loss, best_delta


def average_case_increase(objective: Objective, c: torch.Tensor, rho: float, norm: str, samples: int,
                          generator: torch.Generator) -> torch.Tensor:
    """E_xi [objective(rho c xi) - objective(0)] over `samples` draws of xi (Gaussian or uniform)."""
    check_norm(norm)
    with torch.no_grad():
        initial_loss = objective(torch.zeros_like(c))
        total = torch.zeros((), dtype=c.dtype, device=c.device)
        for _ in range(samples):
            total = total + objective(sample_noise(c, rho, norm, generator))
    return total / samples - initial_loss
