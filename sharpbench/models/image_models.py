"""Any timm image model by name, with keyword overrides of its config."""

from __future__ import annotations

from typing import Any

from torch import nn

from sharpbench.models.layers import ToImage


def build_timm(config: dict[str, Any]) -> nn.Module:
    """``timm.create_model(model, num_classes, in_chans, drop_rate, drop_path_rate, **kwargs)``, after a reshape
    of the inputs to the dataset's image shape. ``kwargs`` overrides the named config (e.g. a tiny ViT:
    img_size, patch_size, embed_dim, depth, num_heads)."""
    import timm

    net = timm.create_model(config["model"], pretrained=config["pretrained"], num_classes=int(config["num_classes"]),
                            in_chans=int(config["image_shape"][0]), drop_rate=config["drop_rate"],
                            drop_path_rate=config["drop_path_rate"], **config["kwargs"])
    return nn.Sequential(ToImage(config["image_shape"]), net)
