"""The study's CIFAR network: a pre-activation ResNet-18 (He et al., 2016, "Identity Mappings in Deep Residual
Networks") with the CIFAR stem, as the study trained it (Andriushchenko et al., 2023, models.py of its code).

Written here rather than taken from timm: timm's ``resnet18`` is the post-activation ImageNet network (7x7 stride-2
stem and a max-pool, which shrink a 32x32 image to 8x8 before the first block), and no kept library ships the
pre-activation variant. As in the study: 3x3 stride-1 stem without BatchNorm, blocks BN-ReLU-conv-BN-ReLU-conv whose
projection shortcut (a 1x1 conv, where the shape changes) reads the first activation, convolutions without bias
(the BatchNorms are affine), a final BN-ReLU, 4x4 average pooling and a linear head. At width 64 and 10 classes it
has 11,172,170 parameters."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from sharpbench.models.layers import ToImage


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus a shortcut: the identity, or a 1x1 conv of the first activation when
    the stride or the width changes."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)
                         if stride != 1 or in_planes != planes else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class PreActResNet(nn.Module):
    """Stem conv, four stages of ``blocks[i]`` PreActBlocks at widths w, 2w, 4w, 8w (stride 2 from the second
    stage on), BN-ReLU, global average pooling (the study's 4x4 average pool at 32x32 inputs), linear head."""

    def __init__(self, blocks: list[int], num_classes: int, width: int, image_shape: list[int]) -> None:
        super().__init__()
        self.to_image = ToImage(image_shape)
        self.conv1 = nn.Conv2d(int(image_shape[0]), width, 3, stride=1, padding=1, bias=False)
        stages, in_planes = [], width
        for index, count in enumerate(blocks):
            planes = width * 2 ** index
            strides = [1 if index == 0 else 2] + [1] * (count - 1)
            stage = []
            for stride in strides:
                stage.append(PreActBlock(in_planes, planes, stride))
                in_planes = planes
            stages.append(nn.Sequential(*stage))
        self.layers = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(in_planes)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(self.to_image(x)))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def build_preact_resnet(config: dict[str, Any]) -> nn.Module:
    """A pre-activation ResNet from a card's architecture section (the study's is blocks [2, 2, 2, 2], width 64)."""
    return PreActResNet([int(b) for b in config["blocks"]], int(config["num_classes"]), int(config["width"]),
                        list(config["image_shape"]))
