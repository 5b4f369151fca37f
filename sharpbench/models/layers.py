"""Small pieces the model families share: activations by card name, dropout, and a reshape to image shape."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def dropout_layers(rate: float | None) -> list[nn.Module]:
    """A dropout layer when the card names a rate (even 0, so that every model of a grid over the rate has the same
    layers and parameter names), none when it does not (the layer indices of cards without dropout stay as
    they were)."""
    return [] if rate is None else [nn.Dropout(float(rate))]


class ToImage(nn.Module):
    """Reshape a batch to (N, *image_shape): lets image models take flat inputs (8x8 digits) as well."""

    def __init__(self, image_shape: list[int]) -> None:
        super().__init__()
        self.image_shape = tuple(int(d) for d in image_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.image_shape)
