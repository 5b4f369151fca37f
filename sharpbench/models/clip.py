"""CLIP's image tower with model-soups' linear head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sharpbench.data.locate import DataPaths
from sharpbench.models.layers import ToImage


class CLIPClassifier(nn.Module):
    """CLIP's image tower with model-soups' head (Wortsman et al. 2022): logits =
    head(normalize(proj(tower(x)))), a linear classifier of the L2-normalized CLIP image embedding. ``proj``
    has no bias, as in CLIP, so that sharpness perturbs no parameter the original model lacks."""

    def __init__(self, tower: nn.Module, embed_dim: int, num_classes: int, image_shape: list[int]) -> None:
        super().__init__()
        self.to_image = ToImage(image_shape)
        self.tower = tower
        self.proj = nn.Linear(tower.num_features, embed_dim, bias=False)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.proj(self.tower(self.to_image(x)))
        return self.head(nn.functional.normalize(features, dim=-1))


def build_clip_classifier(config: dict[str, Any], paths: DataPaths) -> nn.Module:
    """A :class:`CLIPClassifier` whose tower is the timm ViT ``model`` (pooled features: ``num_classes=0``) with
    ``kwargs`` overrides; ``pretrained`` names an OpenAI CLIP or model-soups checkpoint to load (a relative
    path is looked up in the data folders); a plain CLIP checkpoint has no head, which stays initialized."""
    import timm

    tower = timm.create_model(config["model"], num_classes=0, in_chans=int(config["image_shape"][0]),
                              **config["kwargs"])
    model = CLIPClassifier(tower, int(config["embed_dim"]), int(config["num_classes"]), config["image_shape"])
    if config["pretrained"]:
        from sharpbench.models.clip_weights import load_openai_clip

        load_openai_clip(model, config["pretrained"], paths)
    return model
