"""The models of the kernel benchmarks, with their batches: a digits MLP, a small CNN, ResNet-18 at
CIFAR shape (3x3 stem, no max-pool), a ViT-S-sized transformer at CIFAR shape, and the two networks users run
at the study's protocol (batches of 128 on every device): the study's own PreActResNet-18 and timm's resnet18
at 32x32 (its ImageNet stem shrinks the image to 8x8 before the first block)."""

from __future__ import annotations

import timm
import torch
import torchvision
from torch import nn

from sharpbench.models.registry import build_model


def digits_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 6 * 6, 10),
    )


def resnet18_cifar() -> nn.Module:
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


def vit_small_cifar() -> nn.Module:
    return timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=4, embed_dim=384, depth=12, num_heads=6, num_classes=10)


def preact_resnet18() -> nn.Module:
    return build_model({"kind": "preact_resnet", "image_shape": [3, 32, 32], "num_classes": 10})


def timm_resnet18() -> nn.Module:
    return timm.create_model("resnet18", num_classes=10)


MODELS = {
    "digits-mlp": (digits_mlp, (64,)),
    "small-cnn": (small_cnn, (3, 32, 32)),
    "resnet18": (resnet18_cifar, (3, 32, 32)),
    "vit-s": (vit_small_cifar, (3, 32, 32)),
    "preact-resnet18": (preact_resnet18, (3, 32, 32)),
    "timm-resnet18": (timm_resnet18, (3, 32, 32)),
}
LARGE = {"resnet18", "vit-s"}       # m = 32 on a CPU; every other model, the study's-protocol ones included, 128


def model_and_batches(name: str, device: torch.device, full: bool, batches: int = 1):
    """The model in eval mode and `batches` seeded batches; full size is m = 128 (32 for the large models on
    a CPU, but 128 for the study's-protocol models everywhere), the small size m = 4."""
    builder, shape = MODELS[name]
    torch.manual_seed(0)
    model = builder().to(device).eval()
    size = (32 if name in LARGE and device.type == "cpu" else 128) if full else 4
    generator = torch.Generator().manual_seed(1)
    data = [(torch.rand(size, *shape, generator=generator).to(device),
             torch.randint(0, 10, (size,), generator=generator).to(device)) for _ in range(batches)]
    return model, data
