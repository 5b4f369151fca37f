"""Data augmentation for training on images: random horizontal flips, random crops after zero padding, and
RandAugment before them (the study's CIFAR-10 recipe: RandAugment(2, 14), random crop with padding 4, flip)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def augment(images: Tensor, mode: str, padding: int, generator: torch.Generator) -> Tensor:
    """Random horizontal flips and/or random crops after zero padding, one draw per image (N, C, H, W), after
    RandAugment when the mode starts with `randaugment`."""
    if mode.startswith("randaugment"):
        images = rand_augment(images, generator)
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


def rand_augment(images: Tensor, generator: torch.Generator, ops: int = 2, magnitude: int = 14) -> Tensor:
    """torchvision's RandAugment (`ops` operations of `magnitude` out of 31 levels), image by image on 8-bit
    copies of the images in [0, 1], as the study's loader applied its RandAugment(2, 14) to each PIL image.
    torchvision draws from torch's global generator: it is forked and seeded from `generator`, so the draws are
    reproducible and the caller's global state is left as it was. (The study's own RandAugment, randomaug.py, has
    a somewhat different list of operations; named on the cards that use this.)"""
    from torchvision.transforms import v2

    transform = v2.RandAugment(num_ops=ops, magnitude=magnitude)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    pixels = (images.detach().cpu() * 255).round().clamp(0, 255).to(torch.uint8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = torch.stack([transform(image) for image in pixels])
    return (out.to(images.dtype) / 255).to(images.device)
