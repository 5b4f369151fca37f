"""Checkpoints trained elsewhere, read safely and converted to sharpbench's models.

OpenAI CLIP and model-soups (Wortsman et al. 2022) checkpoints become a ``clip_classifier``
(:class:`sharpbench.models.registry.CLIPClassifier`): the image tower is converted by timm's own OpenAI-CLIP
converter, and only what timm has no place for (``proj`` and model-soups' classification head) is mapped here.
"""

from __future__ import annotations

import torch
from torch import nn

from sharpbench.data.locate import DataPaths
from sharpbench.errors import CollectionError
from sharpbench.models.checkpoint_files import find_checkpoint, read_checkpoint

# the rest of a CLIP model: its text tower (model-soups' ModelWrapper keeps all but `transformer`) and the
# metadata entries of OpenAI's TorchScript state dicts
_TEXT_TOWER = ("transformer.", "token_embedding.", "ln_final.", "positional_embedding", "text_projection",
               "logit_scale", "input_resolution", "context_length", "vocab_size")
_BLOCK_KEYS = ("ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
               "attn.out_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
               "mlp.c_proj.weight", "mlp.c_proj.bias")
_HEAD_KEYS = {"classification_head.weight", "classification_head.bias"}


def _openai_visual_keys(depth: int) -> set[str]:
    """The keys of OpenAI CLIP's VisionTransformer with ``depth`` blocks (the ``visual.`` part of a CLIP)."""
    blocks = {f"visual.transformer.resblocks.{i}.{key}" for i in range(depth) for key in _BLOCK_KEYS}
    return blocks | {f"visual.{key}" for key in ("conv1.weight", "class_embedding", "positional_embedding",
                                                 "ln_pre.weight", "ln_pre.bias", "ln_post.weight", "ln_post.bias",
                                                 "proj")}


def openai_clip_to_classifier(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The float32 state dict of ``model`` (a CLIPClassifier) from an OpenAI CLIP state dict (``visual.*``) or
    a model-soups one (``model.visual.*`` and ``classification_head.*``); the text tower is dropped. Without
    ``classification_head.*`` (a plain CLIP) the model's own head is kept. Raises ValueError naming the keys
    that are missing or unexpected."""
    # timm's converter itself, not its checkpoint_filter_fn, which would silently resample the position and
    # patch embeddings of a checkpoint made for another image or patch size
    from timm.models.vision_transformer import _convert_openai_clip

    # model-soups' ModelWrapper holds the CLIP model as `.model` and the head as `.classification_head`
    state = {key.removeprefix("model."): value for key, value in state.items()}
    visual = {key: value for key, value in state.items() if key.startswith("visual.")}
    head = {key: value for key, value in state.items() if key.startswith("classification_head.")}
    expected = _openai_visual_keys(len(model.tower.blocks)) | (_HEAD_KEYS if head else set())
    given = set(visual) | set(head)
    missing = sorted(expected - given)
    unexpected = sorted(given - expected)
    unexpected += sorted(key for key in set(state) - given if not key.startswith(_TEXT_TOWER))
    if missing or unexpected:
        raise ValueError(
            f"not an OpenAI CLIP ViT with {len(model.tower.blocks)} blocks (+ a model-soups head): missing "
            f"{missing or 'nothing'}, unexpected {unexpected or 'nothing'}; check that the card's architecture "
            f"(model, kwargs) is the checkpoint's (keys shown without model-soups' prefix 'model.')")

    # hand-written, as timm has no place for them: OpenAI's `proj` (x @ proj) becomes our bias-free Linear (timm's
    # converter would make it a head with a zero bias, a parameter the original model lacks and that sharpness
    # would perturb), and model-soups' classification head our `head`
    proj = visual.pop("visual.proj")
    converted = {f"tower.{key}": value for key, value in _convert_openai_clip(visual, model.tower).items()}
    converted["proj.weight"] = proj.t()
    if head:
        converted.update({f"head.{key.removeprefix('classification_head.')}": value for key, value in head.items()})
    else:
        converted.update({f"head.{key}": value for key, value in model.head.state_dict().items()})
    return {key: value.to(torch.float32) for key, value in converted.items()}


def load_openai_clip(model: nn.Module, name: str, paths: DataPaths) -> None:
    """Load the OpenAI CLIP / model-soups checkpoint ``name`` into ``model`` (a CLIPClassifier), strictly: a
    key or shape that does not fit raises CollectionError naming the file."""
    path = find_checkpoint(name, paths)
    state = read_checkpoint(path)
    try:
        model.load_state_dict(openai_clip_to_classifier(state, model), strict=True)
    except ValueError as error:
        raise CollectionError(f"{path} does not fit the clip_classifier: {error}") from None
    except RuntimeError as error:                       # shapes: torch lists every parameter that differs
        raise CollectionError(f"{path} does not fit the clip_classifier ({error}); give the card's architecture "
                              f"the checkpoint's shapes (model, kwargs, embed_dim; num_classes is the "
                              f"dataset's)") from None
