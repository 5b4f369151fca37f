"""PAC-Bayes flatness (Jiang et al. 2020; Dziugaite et al. 2020): how much Gaussian weight noise the training
accuracy tolerates, found by bisection on the noise scale sigma."""

from __future__ import annotations

import math

import torch
from torch import nn

from sharpbench import FlatModel, MeasureContext


def _accuracy(flat: FlatModel, w: torch.Tensor, context: MeasureContext) -> float:
    correct, count = 0, 0
    for inputs, labels in context.batches:
        correct += int((flat.logits(w, inputs).argmax(dim=-1) == labels).sum())
        count += len(labels)
    return correct / count


def _noise_std(flat: FlatModel, sigma: float, magnitude_aware: bool, eps: float) -> torch.Tensor | float:
    """Standard deviation of each weight's noise: sigma, or sqrt(sigma^2 w_i^2 + eps^2) (magnitude-aware)."""
    if not magnitude_aware:
        return sigma
    return (sigma**2 * flat.w0.square() + eps**2).sqrt()


def _noisy_accuracy(flat: FlatModel, context: MeasureContext, std: torch.Tensor | float, seed: int,
                    samples: int) -> float:
    """Mean training accuracy over `samples` noise draws w + std * xi; the same xi for every sigma (common random
    numbers), so the estimate is a deterministic function of sigma and the bisection compares like with like."""
    generator = torch.Generator(device=flat.w0.device).manual_seed(seed)
    total = 0.0
    for _ in range(samples):
        xi = torch.randn(flat.w0.shape, generator=generator, device=flat.w0.device, dtype=flat.w0.dtype)
        total += _accuracy(flat, flat.w0 + std * xi, context)
    return total / samples


def pac_bayes_flatness(model: nn.Module, context: MeasureContext, *, magnitude_aware: bool, drop: float = 0.1,
                       samples: int = 8, steps: int = 12, sigma_min: float = 1e-4, sigma_max: float = 10.0,
                       eps: float = 1e-3) -> float:
    """1 / sigma^2 for the largest sigma whose noise lowers the mean training accuracy by at most `drop`.

    Bisection on log sigma over [sigma_min, sigma_max] for `steps` halvings; a model whose accuracy never drops
    that much (or always does) reports the bound.
    """
    if not 0 < drop < 1:
        raise ValueError(f"drop must be in (0, 1), got {drop}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
    if samples < 1 or steps < 1:
        raise ValueError(f"samples and steps must be >= 1, got {samples} and {steps}")
    flat = FlatModel.of(model)
    seed = int(torch.randint(2**62, (1,), generator=context.generator, device=context.generator.device))
    low, high = math.log(sigma_min), math.log(sigma_max)
    with torch.no_grad():
        clean = _accuracy(flat, flat.w0, context)
        for _ in range(steps):
            middle = (low + high) / 2
            std = _noise_std(flat, math.exp(middle), magnitude_aware, eps)
            if clean - _noisy_accuracy(flat, context, std, seed, samples) > drop:
                high = middle
            else:
                low = middle
    sigma = math.exp((low + high) / 2)
    return 1.0 / sigma**2
