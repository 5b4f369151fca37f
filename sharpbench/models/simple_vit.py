"""The study's CIFAR-10 ViT: vit-pytorch's SimpleViT (2-D sine-cosine position embeddings, mean pooling, no class
token, no dropout), as the study's `vit_exp` builds it: image 32, patch 4, width 512, depth 6, 16 heads, MLP 1024
(18,928,234 parameters for 10 classes)."""

from __future__ import annotations

from typing import Any

from torch import nn

from sharpbench.models.layers import ToImage


def build_simple_vit(config: dict[str, Any]) -> nn.Module:
    """SimpleViT from a card's architecture section; inputs are reshaped to the card's image_shape first."""
    from vit_pytorch import SimpleViT

    channels, height, width = (int(d) for d in config["image_shape"])
    vit = SimpleViT(image_size=(height, width), patch_size=int(config["patch_size"]),
                    num_classes=int(config["num_classes"]), dim=int(config["dim"]), depth=int(config["depth"]),
                    heads=int(config["heads"]), mlp_dim=int(config["mlp_dim"]), channels=channels,
                    dim_head=int(config["dim_head"]))
    return nn.Sequential(ToImage([channels, height, width]), vit)
