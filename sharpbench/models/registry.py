"""Model builders: a small registry from architecture kind to builder (timm-style).

``ARCHITECTURES[kind]`` is an :class:`ArchitectureKind`: a builder ``(config) -> nn.Module`` and the fields
it takes (a collection card's ``architecture`` section holds fixed values of them; its grid may vary
them). ``build_model(arch, hparams)`` merges the two, so a grid can vary ``width`` while the card fixes
``depth``. Kinds: built-in small nets (mlp, cnn, diag_linear), any timm model by name with keyword
overrides (timm), the study's pre-activation ResNet (preact_resnet) and SimpleViT (simple_vit), CLIP's image tower with model-soups' head (clip_classifier), and a Hugging Face
transformers config for sequence classification (transformers).
Fields such as ``num_classes`` and ``image_shape`` come from the dataset. Every model maps a batch of
inputs (as the dataset gives them) to outputs, so the measures need no per-model code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from sharpbench.cards.schema import Param, at_least, in_range, length, non_negative, one_of, positive
from sharpbench.data.locate import DataPaths
from sharpbench.models.clip import build_clip_classifier
from sharpbench.models.cnn import build_cnn
from sharpbench.models.cnn1d import build_cnn1d
from sharpbench.models.diagonal import DiagonalLinearNet
from sharpbench.models.image_models import build_timm
from sharpbench.models.layers import ACTIVATIONS
from sharpbench.models.mlp import build_mlp
from sharpbench.models.preact_resnet import build_preact_resnet
from sharpbench.models.simple_vit import build_simple_vit
from sharpbench.models.text import build_transformers


@dataclass(frozen=True)
class ArchitectureKind:
    """One architecture kind: its builder ``(config) -> nn.Module``, or ``(config, paths) -> nn.Module`` for a kind
    that ``reads_files`` (pretrained weights in the user's data folders), and the card fields it takes."""

    builder: Callable[..., nn.Module]
    params: dict[str, Param]
    description: str = ""
    reads_files: bool = False


_IMAGE_SHAPE = Param(list, check=length(3, int, positive), note="[channels, height, width] of an image dataset")
_NUM_CLASSES = Param(int, check=at_least(2))
_DROPOUT = Param(float, default=None, check=in_range(0, 1, closed="left"),
                 note="after each hidden activation; left out: no dropout layers")

ARCHITECTURES: dict[str, ArchitectureKind] = {
    "mlp": ArchitectureKind(
        build_mlp,
        {
            "in_features": Param(int, check=positive),
            "num_classes": Param(int, check=at_least(2)),
            "width": Param(int, check=positive),
            "depth": Param(int, default=1, check=non_negative),
            "activation": Param(str, default="relu", check=one_of(*sorted(ACTIVATIONS))),
            "bias": Param(bool, default=True),
            "dropout": _DROPOUT,
        },
        "fully connected network on flat inputs",
    ),
    "cnn1d": ArchitectureKind(
        build_cnn1d,
        {
            "in_features": Param(int, check=positive, note="the signal's length"),
            "num_classes": _NUM_CLASSES,
            "width": Param(int, default=25, check=positive, note="channels of every convolution"),
            "depth": Param(int, default=3, check=positive),
            "activation": Param(str, default="relu", check=one_of(*sorted(ACTIVATIONS))),
            "dropout": _DROPOUT,
        },
        "1-D CNN on signals (MNIST-1D): strided convolutions, kernel 5 then 3, and a linear head",
    ),
    "cnn": ArchitectureKind(
        build_cnn,
        {
            "image_shape": _IMAGE_SHAPE,
            "num_classes": _NUM_CLASSES,
            "width": Param(int, default=16, check=positive),
            "depth": Param(int, default=2, check=positive),
            "activation": Param(str, default="relu", check=one_of(*sorted(ACTIVATIONS))),
            "batch_norm": Param(bool, default=False),
            "downsample": Param(str, default="maxpool", check=one_of("maxpool", "stride")),
        },
        "small convolutional network: conv-activation-maxpool blocks, linear head",
    ),
    "preact_resnet": ArchitectureKind(
        build_preact_resnet,
        {
            "image_shape": _IMAGE_SHAPE,
            "num_classes": _NUM_CLASSES,
            "width": Param(int, default=64, check=positive, note="the first stage's channels; 64 in the study"),
            "blocks": Param(list, default=[2, 2, 2, 2], check=length(4, int, positive),
                            note="blocks per stage; [2, 2, 2, 2] is PreActResNet-18"),
        },
        "the study's pre-activation ResNet (PreActResNet-18 by default): CIFAR stem, BN-ReLU-conv blocks",
    ),
    "simple_vit": ArchitectureKind(
        build_simple_vit,
        {
            "image_shape": _IMAGE_SHAPE,
            "num_classes": _NUM_CLASSES,
            "patch_size": Param(int, default=4, check=positive, note="must divide the image's height and width"),
            "dim": Param(int, default=512, check=positive),
            "depth": Param(int, default=6, check=positive),
            "heads": Param(int, default=16, check=positive),
            "mlp_dim": Param(int, default=1024, check=positive),
            "dim_head": Param(int, default=64, check=positive),
        },
        "the study's CIFAR-10 ViT: vit-pytorch's SimpleViT (defaults: patch 4, width 512, depth 6, 16 heads, MLP "
        "1024)",
    ),
    "timm": ArchitectureKind(
        build_timm,
        {
            "image_shape": _IMAGE_SHAPE,
            "num_classes": _NUM_CLASSES,
            "model": Param(str, expected="a timm model name, e.g. vit_tiny_patch16_224 or resnet18"),
            "kwargs": Param(dict, default={}),
            "pretrained": Param(bool, default=False),
            "pretrained_file": Param(str, default=""),
            "drop_rate": Param(float, default=0.0, check=in_range(0, 1, closed="left")),
            "drop_path_rate": Param(float, default=0.0, check=in_range(0, 1, closed="left")),
        },
        "any timm model by name, with keyword overrides of its config; weights by timm name or from a file "
        "(Google's .npz ViT/AugReg, or a state dict)",
        reads_files=True,
    ),
    "clip_classifier": ArchitectureKind(
        build_clip_classifier,
        {
            "image_shape": _IMAGE_SHAPE,
            "num_classes": _NUM_CLASSES,
            # OpenAI's ViT-B/32 exactly: QuickGELU and the pre-norm ln_pre (timm's plain *_clip_224 use GELU)
            "model": Param(str, default="vit_base_patch32_clip_quickgelu_224",
                           expected="a timm CLIP ViT name, e.g. vit_base_patch32_clip_quickgelu_224"),
            "embed_dim": Param(int, default=512, check=positive),
            "kwargs": Param(dict, default={}),
            "pretrained": Param(str, default=""),
        },
        "CLIP image tower (timm ViT) + projection, L2-normalized, + linear head (model-soups); OpenAI CLIP or "
        "model-soups checkpoints",
        reads_files=True,
    ),
    "diag_linear": ArchitectureKind(
        lambda config: DiagonalLinearNet(int(config["in_features"]), float(config["init_scale"])),
        {
            "in_features": Param(int, check=positive),
            "num_classes": Param(int, check=one_of(1), note="a regression dataset"),
            "init_scale": Param(float, check=positive),
        },
        "diagonal linear network f(x) = <u * v, x> (the study's toy model)",
    ),
    "transformers": ArchitectureKind(
        build_transformers,
        {
            "num_classes": _NUM_CLASSES,
            "vocab_size": Param(int, check=positive, note="a text dataset"),
            "pad_token_id": Param(int, check=non_negative, note="a text dataset"),
            "model_type": Param(str, default="bert"),
            "config": Param(dict, default={}),
            "pretrained": Param(str, default=""),
        },
        "a Hugging Face transformers sequence classifier (config or pretrained name), token ids -> logits",
        reads_files=True,
    ),
}


def architecture_config(arch: dict[str, Any], hparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """The builder's full configuration: defaults, then the card's fixed fields, then grid values."""
    kind = ARCHITECTURES[arch["kind"]]
    config = {name: p.default for name, p in kind.params.items() if p.default is not ...}
    config.update({k: v for k, v in arch.items() if k != "kind"})
    for name, value in (hparams or {}).items():
        if name in kind.params:
            config[name] = value
    missing = [name for name in kind.params if name not in config]
    if missing:
        raise ValueError(f"architecture {arch['kind']!r} needs {missing}")
    return config


def build_model(arch: dict[str, Any], hparams: dict[str, Any] | None = None,
                paths: DataPaths | None = None) -> nn.Module:
    """A freshly initialized float32 model (initialized from torch's global RNG: seed it first); pretrained weights
    named by a relative path are looked up in ``paths`` (default: $SHARPBENCH_DATA)."""
    if arch.get("kind") not in ARCHITECTURES:
        raise KeyError(f"unknown architecture kind {arch.get('kind')!r}; known: {sorted(ARCHITECTURES)}")
    kind, config = ARCHITECTURES[arch["kind"]], architecture_config(arch, hparams)
    model = kind.builder(config, paths or DataPaths.from_env()) if kind.reads_files else kind.builder(config)
    return model.to(torch.float32)
