"""A tiny ReLU classifier and three batches of random data, shared by the measure tests that need any network with
a hidden ReLU layer (a rescaling of it leaves the function unchanged)."""

from __future__ import annotations

import torch
from torch import nn


def relu_net_and_batches() -> tuple[nn.Sequential, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Linear(4, 8), ReLU, Linear(8, 3) in eval mode (seed 0), and three batches of 16 points with 3 labels."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    generator = torch.Generator().manual_seed(2)
    batches = [(torch.randn(16, 4, generator=generator), torch.randint(0, 3, (16,), generator=generator))
               for _ in range(3)]
    return model, batches
