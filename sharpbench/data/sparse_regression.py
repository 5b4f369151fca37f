"""The study's toy data: sparse linear regression, y = <beta*, x> with a k-sparse beta* and Gaussian x.

Diagonal linear networks trained on it from a small initialization find sparse (small L1) interpolators
and generalize; from a large one they find the min-L2 interpolator and do not. Generated from a seed, so
no download; the labels are float32 targets, not classes.
"""

from __future__ import annotations

from typing import Any

import torch


def load_sparse_regression(cfg: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): x ~ N(0, I_dim), beta* with ``nonzero`` entries +-1/sqrt(nonzero) at
    random places, y = <beta*, x> + ``noise`` * N(0, 1); all drawn from a generator seeded by ``seed``."""
    generator = torch.Generator().manual_seed(int(cfg["seed"]))
    dim, nonzero = int(cfg["dim"]), int(cfg["nonzero"])
    beta = torch.zeros(dim)
    support = torch.randperm(dim, generator=generator)[:nonzero]
    signs = torch.randint(0, 2, (nonzero,), generator=generator).float() * 2 - 1
    beta[support] = signs / nonzero ** 0.5
    out = []
    for size in (int(cfg["num_train"]), int(cfg["num_test"])):
        x = torch.randn(size, dim, generator=generator)
        y = x @ beta + float(cfg["noise"]) * torch.randn(size, generator=generator)
        out += [x.contiguous(), y.contiguous()]
    return out[0], out[1], out[2], out[3]
