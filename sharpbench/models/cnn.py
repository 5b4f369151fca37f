"""Small convolutional networks, trainable on a CPU in seconds."""

from __future__ import annotations

from typing import Any

from torch import nn

from sharpbench.models.layers import ACTIVATIONS, ToImage


def build_cnn(config: dict[str, Any]) -> nn.Module:
    """``depth`` blocks of 3x3 conv (``width`` doubling per block), optional BatchNorm, activation, and a halving
    of the resolution (2x2 max pool, or the conv's own stride 2: four times cheaper); then a linear head on the
    flattened features. Small enough to train on a CPU in seconds."""
    channels, height, width_px = (int(d) for d in config["image_shape"])
    layers: list[nn.Module] = [ToImage(config["image_shape"])]
    out = int(config["width"])
    strided = config["downsample"] == "stride"
    for _ in range(int(config["depth"])):
        layers.append(nn.Conv2d(channels, out, 3, stride=2 if strided else 1, padding=1,
                                bias=not config["batch_norm"]))
        if config["batch_norm"]:
            layers.append(nn.BatchNorm2d(out))
        layers.append(ACTIVATIONS[config["activation"]]())
        if not strided:
            layers.append(nn.MaxPool2d(2))
        height, width_px = (height + 1) // 2 if strided else height // 2, (width_px + 1) // 2 if strided else width_px // 2
        channels, out = out, out * 2
    layers += [nn.Flatten(), nn.Linear(channels * height * width_px, int(config["num_classes"]))]
    return nn.Sequential(*layers)
