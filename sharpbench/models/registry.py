"""Model builders: a small registry from architecture kind to builder (timm-style).

``ARCHITECTURES[kind]`` is an :class:`ArchitectureKind`: a builder ``(config) -> nn.Module`` and the fields
it takes (a collection card's ``architecture`` section holds fixed values of them; its grid may vary
them). ``build_model(arch, hparams)`` merges the two, so a grid can vary ``width`` while the card fixes
``depth``. Kinds: built-in small nets (mlp, cnn, diag_linear), any timm model by name with keyword
overrides (timm), CLIP's image tower with model-soups' head (clip_classifier), and a Hugging Face
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
from sharpbench.data.locate import find_dataset_folder


@dataclass(frozen=True)
class ArchitectureKind:
    builder: Callable[[dict[str, Any]], nn.Module]
    params: dict[str, Param]
    description: str = ""


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def _build_mlp(config: dict[str, Any]) -> nn.Module:
    """``depth`` hidden layers of ``width`` units with ``activation``, then a linear head.

    An nn.Sequential, so parameter names are stable: 0.weight, 0.bias, 2.weight, ..."""
    layers: list[nn.Module] = []
    features = int(config["in_features"])
    for _ in range(int(config["depth"])):
        layers += [nn.Linear(features, int(config["width"]), bias=config["bias"]), _ACTIVATIONS[config["activation"]]()]
        features = int(config["width"])
    layers.append(nn.Linear(features, int(config["num_classes"]), bias=config["bias"]))
    return nn.Sequential(*layers)


class ToImage(nn.Module):
    """Reshape a batch to (N, *image_shape): lets image models take flat inputs (8x8 digits) as well."""

    def __init__(self, image_shape: list[int]) -> None:
        super().__init__()
        self.image_shape = tuple(int(d) for d in image_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.image_shape)


def _build_cnn(config: dict[str, Any]) -> nn.Module:
    """``depth`` blocks of 3x3 conv (``width`` doubling per block), optional BatchNorm, activation, and a halving
    of the resolution (2x2 max pool, or the conv's own stride 2: four times cheaper); then a linear head on the
    flattened features. Small enough to train on a CPU in seconds."""
    channels, height, width_px = (int(d) for d in config["image_shape"])
    layers: list[nn.Module] = [ToImage(config["image_shape"])]
    out = int(config["width"])
    strided = config["downsample"] == "stride"
    for _ in range(int(config["depth"])):
        layers.append(nn.Conv2d(channels, out, 3, stride=2 if strided else 1, padding=1,
                                bias=not config["batch_norm"]))
        if config["batch_norm"]:
            layers.append(nn.BatchNorm2d(out))
        layers.append(_ACTIVATIONS[config["activation"]]())
        if not strided:
            layers.append(nn.MaxPool2d(2))
        height, width_px = (height + 1) // 2 if strided else height // 2, (width_px + 1) // 2 if strided else width_px // 2
        channels, out = out, out * 2
    layers += [nn.Flatten(), nn.Linear(channels * height * width_px, int(config["num_classes"]))]
    return nn.Sequential(*layers)


def _build_timm(config: dict[str, Any]) -> nn.Module:
    """``timm.create_model(model, num_classes, in_chans, drop_rate, drop_path_rate, **kwargs)``, after a reshape
    of the inputs to the dataset's image shape. ``kwargs`` overrides the named config (e.g. a tiny ViT:
    img_size, patch_size, embed_dim, depth, num_heads)."""
    import timm

    net = timm.create_model(config["model"], pretrained=config["pretrained"], num_classes=int(config["num_classes"]),
                            in_chans=int(config["image_shape"][0]), drop_rate=config["drop_rate"],
                            drop_path_rate=config["drop_path_rate"], **config["kwargs"])
    return nn.Sequential(ToImage(config["image_shape"]), net)


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


def _build_clip_classifier(config: dict[str, Any]) -> nn.Module:
    """A :class:`CLIPClassifier` whose tower is the timm ViT ``model`` (pooled features: ``num_classes=0``) with
    ``kwargs`` overrides; ``pretrained`` names an OpenAI CLIP or model-soups checkpoint to load (a relative
    path is looked up in ``$SHARPBENCH_DATA``); a plain CLIP checkpoint has no head, which stays initialized."""
    import timm

    tower = timm.create_model(config["model"], num_classes=0, in_chans=int(config["image_shape"][0]),
                              **config["kwargs"])
    model = CLIPClassifier(tower, int(config["embed_dim"]), int(config["num_classes"]), config["image_shape"])
    if config["pretrained"]:
        from sharpbench.models.clip_weights import load_openai_clip

        load_openai_clip(model, config["pretrained"])
    return model


class DiagonalLinearNet(nn.Module):
    """f(x) = <u * v, x>, output shape (N, 1). Initialized at u = sqrt(2) * scale, v = 0 (no randomness): with
    w+- = (u +- v) / sqrt(2), both starting at ``scale``, beta = u * v = (w+^2 - w-^2) / 2, which is the
    parametrization of Woodworth et al. (2020), beta = w+^2 - w-^2, from their alpha = scale / sqrt(2) (the
    factor only rescales time). The predictor starts at 0 and the scale alone selects the implicit bias
    (small: sparse, L1-like; large: min-L2)."""

    def __init__(self, in_features: int, init_scale: float) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.full((in_features,), 2 ** 0.5 * init_scale))
        self.v = nn.Parameter(torch.zeros(in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ (self.u * self.v)).unsqueeze(-1)


class TextClassifier(nn.Module):
    """A Hugging Face sequence classifier taking one tensor of token ids and returning logits: the one-tensor
    forward that the sharpness measures use. Inputs are (N, L) token ids, or (N, 2, L) = [input_ids,
    token_type_ids] for sentence pairs (pretrained BERT tells premise from hypothesis by the segment ids);
    the attention mask is derived from the padding id.

    The mask is passed ready-made (4D, additive: 0 for tokens, the float minimum for padding), which
    transformers uses as is; its 2D form would make transformers inspect the mask's values (``mask.all()``),
    control flow that ``torch.func.vmap`` over m-sharpness batches cannot trace."""

    def __init__(self, model: nn.Module, pad_token_id: int) -> None:
        super().__init__()
        self.model = model
        self.pad_token_id = int(pad_token_id)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # segment ids only when given: models without them (DistilBERT) keep taking (N, L) ids
        input_ids, segments = (inputs[:, 0], {"token_type_ids": inputs[:, 1]}) if inputs.dim() == 3 else (inputs, {})
        padding = (input_ids == self.pad_token_id).to(torch.float32) * torch.finfo(torch.float32).min
        return self.model(input_ids=input_ids, attention_mask=padding[:, None, None, :], **segments).logits


def _build_transformers(config: dict[str, Any]) -> nn.Module:
    """A ``transformers`` sequence classifier: from ``pretrained`` when given (a folder of that name under
    ``--data-dir`` / ``$SHARPBENCH_DATA``, else a local path or hub id as transformers reads it), else freshly
    initialized from ``model_type`` and the ``config`` fields (e.g. a tiny BERT)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if config["pretrained"]:
        source = find_dataset_folder(config["pretrained"]) or config["pretrained"]
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=int(config["num_classes"]), **config["config"])
    else:
        hf_config = AutoConfig.for_model(config["model_type"], vocab_size=int(config["vocab_size"]),
                                         num_labels=int(config["num_classes"]),
                                         pad_token_id=int(config["pad_token_id"]), **config["config"])
        model = AutoModelForSequenceClassification.from_config(hf_config)
    return TextClassifier(model, config["pad_token_id"])


_IMAGE_SHAPE = Param(list, check=length(3, int, positive), note="[channels, height, width] of an image dataset")
_NUM_CLASSES = Param(int, check=at_least(2))

ARCHITECTURES: dict[str, ArchitectureKind] = {
    "mlp": ArchitectureKind(
        _build_mlp,
        {
            "in_features": Param(int, check=positive),
            "num_classes": Param(int, check=at_least(2)),
            "width": Param(int, check=positive),
            "depth": Param(int, default=1, check=non_negative),
            "activation": Param(str, default="relu", check=one_of(*sorted(_ACTIVATIONS))),
            "bias": Param(bool, default=True),
        },
        "fully connected network on flat inputs",
    ),
    "cnn": ArchitectureKind(
        _build_cnn,
        {
            "image_shape": _IMAGE_SHAPE,
            "num_classes": _NUM_CLASSES,
            "width": Param(int, default=16, check=positive),
            "depth": Param(int, default=2, check=positive),
            "activation": Param(str, default="relu", check=one_of(*sorted(_ACTIVATIONS))),
            "batch_norm": Param(bool, default=False),
            "downsample": Param(str, default="maxpool", check=one_of("maxpool", "stride")),
        },
        "small convolutional network: conv-activation-maxpool blocks, linear head",
    ),
    "timm": ArchitectureKind(
        _build_timm,
        {
            "image_shape": _IMAGE_SHAPE,
            "num_classes": _NUM_CLASSES,
            "model": Param(str, expected="a timm model name, e.g. vit_tiny_patch16_224 or resnet18"),
            "kwargs": Param(dict, default={}),
            "pretrained": Param(bool, default=False),
            "drop_rate": Param(float, default=0.0, check=in_range(0, 1, closed="left")),
            "drop_path_rate": Param(float, default=0.0, check=in_range(0, 1, closed="left")),
        },
        "any timm model by name, with keyword overrides of its config",
    ),
    "clip_classifier": ArchitectureKind(
        _build_clip_classifier,
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
        _build_transformers,
        {
            "num_classes": _NUM_CLASSES,
            "vocab_size": Param(int, check=positive, note="a text dataset"),
            "pad_token_id": Param(int, check=non_negative, note="a text dataset"),
            "model_type": Param(str, default="bert"),
            "config": Param(dict, default={}),
            "pretrained": Param(str, default=""),
        },
        "a Hugging Face transformers sequence classifier (config or pretrained name), token ids -> logits",
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


def build_model(arch: dict[str, Any], hparams: dict[str, Any] | None = None) -> nn.Module:
    """A freshly initialized float32 model (initialized from torch's global RNG: seed it first)."""
    if arch.get("kind") not in ARCHITECTURES:
        raise KeyError(f"unknown architecture kind {arch.get('kind')!r}; known: {sorted(ARCHITECTURES)}")
    model = ARCHITECTURES[arch["kind"]].builder(architecture_config(arch, hparams))
    return model.to(torch.float32)
