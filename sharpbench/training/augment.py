"""Data augmentation for training on images: random horizontal flips and random crops after zero padding."""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def augment(images: Tensor, mode: str, padding: int, generator: torch.Generator) -> Tensor:
    """Random horizontal flips and/or random crops after zero padding, one draw per image (N, C, H, W)."""
    if "flip" in mode:
        flip = (torch.rand(images.shape[0], generator=generator) < 0.5).to(images.device)
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    if "crop" in mode and padding > 0:
        height, width = images.shape[-2:]
        padded = F.pad(images, (padding,) * 4)
        offsets = torch.randint(0, 2 * padding + 1, (images.shape[0], 2), generator=generator)
        # one gather per distinct offset: at most (2p+1)^2 slices, instead of a Python loop over images
        out = torch.empty_like(images)
        for dy, dx in torch.unique(offsets, dim=0).tolist():
            rows = ((offsets[:, 0] == dy) & (offsets[:, 1] == dx)).to(images.device)
            out[rows] = padded[rows, :, dy:dy + height, dx:dx + width]
        images = out
    return images
