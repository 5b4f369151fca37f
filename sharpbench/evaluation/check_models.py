"""The tiny models that `sharpbench measure check` runs a measure on, built in memory from the project's own model
registry: an MLP with ReLU hidden layers, a BatchNorm CNN, a timm ViT and a transformers BERT classifier, each
fitted for a few steps on its own two seeded batches (so that losses, margins and accuracies are those of a model
that has learned something, not of a random one). No file, download or dataset is read; a few seconds in all."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from torch import nn

from sharpbench.measure import Batch
from sharpbench.models.registry import build_model

IMAGE_SHAPE = [1, 8, 8]       # the 8x8 digits' shape; image models take flat inputs, as on digits
IMAGE_CLASSES = 10
TEXT_CLASSES = 2
VOCAB_SIZE, PAD_TOKEN, SEQUENCE_LENGTH = 24, 0, 8
BATCHES, BATCH_SIZE = 2, 16
FIT_STEPS = 30                # Adam steps on the check batches: each model's train loss falls well below chance

# Each family's architecture as a collection card's `architecture` section gives it (kept tiny: a check of the
# slowest measure on all four stays within seconds on two CPU cores).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "mlp": {"kind": "mlp", "in_features": 64, "num_classes": IMAGE_CLASSES, "width": 16, "depth": 2,
            "activation": "relu"},
    "cnn-batchnorm": {"kind": "cnn", "image_shape": IMAGE_SHAPE, "num_classes": IMAGE_CLASSES, "width": 4,
                      "depth": 2, "batch_norm": True, "downsample": "stride"},
    "vit": {"kind": "timm", "image_shape": IMAGE_SHAPE, "num_classes": IMAGE_CLASSES, "model": "vit_tiny_patch16_224",
            "kwargs": {"img_size": 8, "patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 2,
                       "mlp_ratio": 2.0}},
    "bert": {"kind": "transformers", "model_type": "bert", "vocab_size": VOCAB_SIZE, "pad_token_id": PAD_TOKEN,
             "num_classes": TEXT_CLASSES,
             "config": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
                        "max_position_embeddings": SEQUENCE_LENGTH, "type_vocab_size": 1,
                        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}},
}


@dataclass
class CheckModel:
    """One tiny model with what a measure receives besides it: its batches, classes and weights at init."""

    name: str
    model: nn.Module
    batches: list[Batch]
    num_classes: int
    initial_state: dict[str, torch.Tensor]


def check_batches(family: str, seed: int) -> list[Batch]:
    """Two seeded batches of 16 in the family's input format: flat 8x8 images in [0, 1], or token ids padded at
    the end (the text models derive their attention mask from the padding id)."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(BATCHES):
        if family == "bert":
            inputs = torch.randint(1, VOCAB_SIZE, (BATCH_SIZE, SEQUENCE_LENGTH), generator=generator)
            lengths = torch.randint(SEQUENCE_LENGTH // 2, SEQUENCE_LENGTH + 1, (BATCH_SIZE,), generator=generator)
            inputs[torch.arange(SEQUENCE_LENGTH)[None, :] >= lengths[:, None]] = PAD_TOKEN
            labels = torch.randint(0, TEXT_CLASSES, (BATCH_SIZE,), generator=generator)
        else:
            inputs = torch.rand(BATCH_SIZE, 64, generator=generator)
            labels = torch.randint(0, IMAGE_CLASSES, (BATCH_SIZE,), generator=generator)
        batches.append((inputs, labels))
    return batches


@cache
def build_check_model(family: str, seed: int = 0) -> CheckModel:
    """The family's tiny model, initialized from `seed` (the caller's global random state is left as it was),
    fitted for FIT_STEPS Adam steps on its batches and left in eval mode. Built once per process: the check
    never modifies it (each call gets copies)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(ARCHITECTURES[family])
    initial_state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    batches = check_batches(family, seed)
    _fit(model, batches)
    num_classes = TEXT_CLASSES if family == "bert" else IMAGE_CLASSES
    return CheckModel(family, model.eval(), batches, num_classes, initial_state)


def _fit(model: nn.Module, batches: list[Batch]) -> None:
    """A few full-batch Adam steps in train mode (BatchNorm's running statistics move away from 0 and 1)."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(FIT_STEPS):
        optimizer.zero_grad(set_to_none=True)
        loss = sum(nn.functional.cross_entropy(model(inputs), labels) for inputs, labels in batches)
        loss.backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.eval()
