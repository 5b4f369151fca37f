"""Deterministic distribution shifts of a test set, on inputs in [0, 1]: noise, translation, contrast, pixel dropout
and blur, and corruptions in the style of CIFAR-10-C (Hendrycks & Dietterich 2019).

Each is deterministic: random ones draw from a generator seeded by the card's ``seed``. Written with torch ops on
(N, C, H, W) tensors, because the reference implementations (ImageMagick, scikit-image, wand) work on one PIL
image at a time and would add dependencies for a few lines of arithmetic each. A shift never modifies its input.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def gaussian_noise(x: Tensor, params: dict[str, Any], image_shape: tuple[int, ...]) -> Tensor:
    """Add N(0, std^2) noise drawn from a generator seeded by ``seed``; clip to [0, 1] unless clip is false."""
    generator = torch.Generator().manual_seed(int(params["seed"]))
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float32)
    out = x + float(params["std"]) * noise.to(x.dtype)
    return out.clamp(0.0, 1.0) if params.get("clip", True) else out


def _shift_whole(images: Tensor, dx: int, dy: int) -> Tensor:
    """Shift (..., H, W) images by whole pixels (right and down positive) with zero fill."""
    height, width = images.shape[-2], images.shape[-1]
    out = torch.zeros_like(images)
    if abs(dx) >= width or abs(dy) >= height:
        return out
    src_y, dst_y = (slice(0, height - dy), slice(dy, height)) if dy >= 0 else (slice(-dy, height), slice(0, height + dy))
    src_x, dst_x = (slice(0, width - dx), slice(dx, width)) if dx >= 0 else (slice(-dx, width), slice(0, width + dx))
    out[..., dst_y, dst_x] = images[..., src_y, src_x]
    return out


def translate(x: Tensor, params: dict[str, Any], image_shape: tuple[int, ...]) -> Tensor:
    """Shift the image by (dx, dy) pixels (right and down positive) with zero fill; a fractional shift
    interpolates bilinearly between the neighbouring whole-pixel shifts (dx = 0.5: half a pixel)."""
    dx, dy = float(params["dx"]), float(params["dy"])
    images = x.reshape(x.shape[0], *image_shape)
    x0, y0 = math.floor(dx), math.floor(dy)
    fx, fy = dx - x0, dy - y0
    out = torch.zeros_like(images)
    for ox, wx in ((x0, 1.0 - fx), (x0 + 1, fx)):
        for oy, wy in ((y0, 1.0 - fy), (y0 + 1, fy)):
            if wx * wy > 0:
                out += (wx * wy) * _shift_whole(images, ox, oy)
    return out.reshape(x.shape)


def contrast(x: Tensor, params: dict[str, Any], image_shape: tuple[int, ...]) -> Tensor:
    """Scale each image's deviation from its own mean intensity by ``factor`` (< 1 lowers contrast)."""
    images = x.reshape(x.shape[0], -1)
    mean = images.mean(dim=1, keepdim=True)
    return (mean + float(params["factor"]) * (images - mean)).reshape(x.shape)


def pixel_dropout(x: Tensor, params: dict[str, Any], image_shape: tuple[int, ...]) -> Tensor:
    """Set a fixed random fraction ``rate`` of the pixels of each image to 0 (seeded by ``seed``)."""
    generator = torch.Generator().manual_seed(int(params["seed"]))
    keep = torch.rand(x.shape, generator=generator) >= float(params["rate"])
    return x * keep.to(x.dtype)


def blur(x: Tensor, params: dict[str, Any], image_shape: tuple[int, ...]) -> Tensor:
    """Gaussian blur with standard deviation ``sigma`` pixels ((2 radius + 1)^2 kernel, zero padding)."""
    sigma, radius = float(params["sigma"]), int(params["radius"])
    taps = torch.tensor([math.exp(-(k * k) / (2 * sigma**2)) for k in range(-radius, radius + 1)])
    kernel = torch.outer(taps, taps)
    kernel = (kernel / kernel.sum()).to(x.dtype)
    channels = image_shape[0]
    images = x.reshape(x.shape[0], *image_shape)
    size = 2 * radius + 1
    weight = kernel.expand(channels, 1, size, size).contiguous()
    out = torch.nn.functional.conv2d(images, weight, padding=radius, groups=channels)
    return out.reshape(x.shape)

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
