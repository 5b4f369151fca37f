"""Fully connected networks on flat inputs."""

from __future__ import annotations

from typing import Any

from torch import nn

from sharpbench.models.layers import ACTIVATIONS, dropout_layers


def build_mlp(config: dict[str, Any]) -> nn.Module:
    """``depth`` hidden layers of ``width`` units with ``activation`` (and dropout when the card names it), then a
    linear head.

    An nn.Sequential, so parameter names are stable: 0.weight, 0.bias, 2.weight, ..."""
    layers: list[nn.Module] = []
    features = int(config["in_features"])
    for _ in range(int(config["depth"])):
        layers += [nn.Linear(features, int(config["width"]), bias=config["bias"]), ACTIVATIONS[config["activation"]](),
                   *dropout_layers(config.get("dropout"))]
        features = int(config["width"])
    layers.append(nn.Linear(features, int(config["num_classes"]), bias=config["bias"]))
    return nn.Sequential(*layers)
