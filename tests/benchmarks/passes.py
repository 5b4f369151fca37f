"""The passes a sharpness call cannot skip, done plainly on the unmodified model: the baselines of the
whole-call ratios (test_calls.py) and of the average case's profile (profile_iteration.py --average)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def plain_passes(model: nn.Module, data, backward: int, forward: int) -> None:
    """Per batch, `backward` plain forward+backward passes and `forward` forward passes of the unmodified model."""
    for inputs, labels in data:
        for _ in range(backward):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(inputs), labels).backward()
        with torch.no_grad():
            for _ in range(forward):
                F.cross_entropy(model(inputs), labels)
    model.zero_grad(set_to_none=True)


def forwards_and_draws(model: nn.Module, data, samples: int, generator: torch.Generator,
                       noise: torch.Tensor) -> None:
    """The average case's passes: per batch, `samples` Gaussian draws of the parameter vector, each into the one
    reused buffer `noise` (on a CPU a fresh one costs its page faults), and samples + 1 forwards."""
    for _ in data:
        for _ in range(samples):
            torch.randn(noise.numel(), generator=generator, out=noise)
    plain_passes(model, data, backward=0, forward=samples + 1)
