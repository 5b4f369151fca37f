"""Any timm image model by name, with keyword overrides of its config, and its weights from the hub or a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sharpbench.data.locate import DataPaths
from sharpbench.errors import CollectionError
from sharpbench.models.checkpoint_files import find_checkpoint, read_checkpoint
from sharpbench.models.layers import ToImage


def build_timm(config: dict[str, Any], paths: DataPaths) -> nn.Module:
    """``timm.create_model(model, num_classes, in_chans, drop_rate, drop_path_rate, **kwargs)``, after a reshape
    of the inputs to the dataset's image shape. ``kwargs`` overrides the named config (e.g. a tiny ViT:
    img_size, patch_size, embed_dim, depth, num_heads). ``pretrained`` takes timm's weights of the name (hub or
    cache); ``pretrained_file`` a file in the data folders instead: Google's ``.npz`` (the original ViT and
    AugReg releases) or a state dict."""
    import timm

    if config["pretrained"] and config["pretrained_file"]:
        raise CollectionError("the architecture gives its weights both by timm name (pretrained: true) and by "
                              "pretrained_file: keep one")
    net = timm.create_model(config["model"], pretrained=config["pretrained"], num_classes=int(config["num_classes"]),
                            in_chans=int(config["image_shape"][0]), drop_rate=config["drop_rate"],
                            drop_path_rate=config["drop_path_rate"], **config["kwargs"])
    if config["pretrained_file"]:
        path = find_checkpoint(config["pretrained_file"], paths)
        if path.suffix == ".npz":
            load_big_vision_npz(net, path)
        else:
            state = read_checkpoint(path)
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as error:
                raise CollectionError(f"{path} does not fit timm's {config['model']} ({error})") from None
    return nn.Sequential(ToImage(config["image_shape"]), net)


def load_big_vision_npz(net: nn.Module, path: Path) -> None:
    """Google's ``.npz`` ViT weights (the original ViT and AugReg, Steiner et al. 2021) into a timm
    VisionTransformer, by timm's own reader (``load_pretrained``), after the checks it leaves out: its head is
    copied only when the checkpoint's has the model's number of classes (else it stays as initialized, silently),
    and a representation layer (``pre_logits``) of the checkpoint would be dropped, changing the function."""
    if not hasattr(net, "load_pretrained"):
        raise CollectionError(f"{path}: a .npz checkpoint loads only into a timm VisionTransformer, not "
                              f"{type(net).__name__}")
    with np.load(path) as weights:
        keys = set(weights.files)
        prefix = next((p for p in ("", "opt/target/", "params/") if f"{p}embedding/kernel" in keys), None)
        if prefix is None:
            raise CollectionError(f"{path} is not a ViT .npz checkpoint (no embedding/kernel)")
        head = weights[f"{prefix}head/bias"].shape[-1] if f"{prefix}head/bias" in keys else None
    if f"{prefix}pre_logits/kernel" in keys:
        raise CollectionError(f"{path} has a representation layer (pre_logits) that timm's ViT does not build: its "
                              f"function cannot be reproduced; use a checkpoint without one (AugReg's)")
    classes = net.get_classifier().out_features
    if head != classes:
        raise CollectionError(f"{path} has a head for {head} classes, the card's model {classes}: use a "
                              f"checkpoint fine-tuned for this dataset (e.g. AugReg's --imagenet2012 files)")
    try:
        with torch.no_grad():
            net.load_pretrained(str(path))
    except (KeyError, ValueError, RuntimeError) as error:
        raise CollectionError(f"{path} does not fit timm's {type(net).__name__} as configured ({error})") from None
