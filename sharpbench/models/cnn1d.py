"""1-D convolutional networks on signals (MNIST-1D), after the CNN of Greydanus and Kobak's MNIST-1D paper: strided
convolutions (kernel 5, then 3; stride 2, padding 1) with an activation after each, then a linear head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sharpbench.models.layers import ACTIVATIONS, dropout_layers


class ToSignal(nn.Module):
    """Reshape a batch of flat signals (N, L) to one channel, (N, 1, L)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], 1, -1)


def build_cnn1d(config: dict[str, Any]) -> nn.Module:
    """``depth`` strided 1-D convolutions of ``width`` channels (kernel 5 for the first, 3 after; stride 2,
    padding 1), each followed by ``activation`` (and dropout when the card names it), then a linear head on the
    flattened features. An nn.Sequential, so parameter names are stable."""
    layers: list[nn.Module] = [ToSignal()]
    channels, length = 1, int(config["in_features"])
    for block in range(int(config["depth"])):
        kernel = 5 if block == 0 else 3
        layers += [nn.Conv1d(channels, int(config["width"]), kernel, stride=2, padding=1),
                   ACTIVATIONS[config["activation"]](), *dropout_layers(config.get("dropout"))]
        channels, length = int(config["width"]), (length + 2 - kernel) // 2 + 1
        if length < 1:
            raise ValueError(f"{config['depth']} strided convolutions leave nothing of a signal of "
                             f"{config['in_features']} samples")
    layers += [nn.Flatten(), nn.Linear(channels * length, int(config["num_classes"]))]
    return nn.Sequential(*layers)
