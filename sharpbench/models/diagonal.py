"""The study's toy model: a diagonal linear network."""

from __future__ import annotations

import torch
from torch import nn


class DiagonalLinearNet(nn.Module):
    """f(x) = <u * v, x>, output shape (N, 1). Initialized at u = sqrt(2) * scale, v = 0 (no randomness): with
    w+- = (u +- v) / sqrt(2), both starting at ``scale``, beta = u * v = (w+^2 - w-^2) / 2, which is the
    parametrization of Woodworth et al. (2020), beta = w+^2 - w-^2, from their alpha = scale / sqrt(2) (the
    factor only rescales time). The predictor starts at 0 and the scale alone selects the implicit bias
    (small: sparse, L1-like; large: min-L2)."""

    def __init__(self, in_features: int, init_scale: float) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.full((in_features,), 2 ** 0.5 * init_scale))
        self.v = nn.Parameter(torch.zeros(in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ (self.u * self.v)).unsqueeze(-1)
