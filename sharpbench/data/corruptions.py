"""Image corruptions in the style of CIFAR-10-C (Hendrycks & Dietterich 2019), on images in [0, 1].

Each is deterministic: random ones draw from a generator seeded by the card's ``seed``. Written with
torch ops on (N, C, H, W) tensors, because the reference implementations (ImageMagick, scikit-image,
wand) work on one PIL image at a time and would add dependencies for a few lines of arithmetic each.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def _images(x: Tensor, image_shape: tuple[int, ...]) -> Tensor:
    return x.reshape(x.shape[0], *image_shape)


def shot_noise(x: Tensor, params: dict[str, Any], image_shape: tuple[int, ...]) -> Tensor:
    """Poisson (photon) noise: Poisson(x * photons) / photons, clipped to [0, 1]; fewer photons, more noise."""
    generator = torch.Generator().manual_seed(int(params["seed"]))
    photons = float(params["photons"])
    return (torch.poisson(x.clamp(0, 1) * photons, generator=generator) / photons).clamp(0, 1)


def impulse_noise(x: Tensor, params: dict[str, Any], image_shape: tuple[int, ...]) -> Tensor:
    """Salt-and-pepper noise: a fraction ``amount`` of the pixels set to 0 or 1 (half each)."""
    generator = torch.Generator().manual_seed(int(params["seed"]))
    draw = torch.rand(x.shape, generator=generator)
    amount = float(params["amount"])
    out = x.clone()
    out[draw < amount / 2] = 0.0
    out[(draw >= amount / 2) & (draw < amount)] = 1.0
    return out


def brightness(x: Tensor, params: dict[str, Any], image_shape: tuple[int, ...]) -> Tensor:
    """Add ``delta`` to every pixel and clip to [0, 1] (the grey-scale form of CIFAR-10-C's HSV brightness)."""
    return (x + float(params["delta"])).clamp(0, 1)


def pixelate(x: Tensor, params: dict[str, Any], image_shape: tuple[int, ...]) -> Tensor:
    """Area-downsample each image to ``size`` x ``size`` and upsample back with nearest neighbours."""
    images = _images(x, image_shape)
    size = int(params["size"])
    small = F.adaptive_avg_pool2d(images, size)
    return F.interpolate(small, size=images.shape[-2:], mode="nearest").reshape(x.shape)


def fog(x: Tensor, params: dict[str, Any], image_shape: tuple[int, ...]) -> Tensor:
    """Fog: add smooth noise (octaves of seeded coarse grids upsampled bilinearly, halving in amplitude) times
    ``strength``, then rescale so that the brightest pixel stays at most 1, as CIFAR-10-C's fog does."""
    images = _images(x, image_shape)
    generator = torch.Generator().manual_seed(int(params["seed"]))
    height, width = images.shape[-2:]
    cloud = torch.zeros(images.shape[0], 1, height, width)
    amplitude, grid = 1.0, 2
    while grid <= max(height, width) // 2:
        coarse = torch.rand(images.shape[0], 1, grid, grid, generator=generator)
        cloud += amplitude * F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
        amplitude, grid = amplitude / 2, grid * 2
    cloud = cloud / cloud.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    strength = float(params["strength"])
    peak = images.amax(dim=(-3, -2, -1), keepdim=True)
    out = (images + strength * cloud) * peak / (peak + strength)
    return out.clamp(0, 1).reshape(x.shape)
