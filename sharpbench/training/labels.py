"""Label noise (Zhang et al. 2017): a seeded fraction of the training labels replaced by random classes."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def noisy_labels(y: Tensor, fraction: float, num_classes: int, seed: int) -> Tensor:
    """A copy of y with a seeded random ``fraction`` of the labels replaced by uniformly drawn classes (which
    may equal the old one, as in Zhang et al. 2017)."""
    if fraction <= 0:
        return y
    generator = torch.Generator().manual_seed(int(seed) + 7919)  # a stream apart from the batch order
    chosen = torch.rand(y.shape[0], generator=generator) < fraction
    random = torch.randint(0, num_classes, y.shape, generator=generator)
    return torch.where(chosen, random, y)
