"""Hugging Face transformers sequence classifiers taking one tensor of token ids."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sharpbench.data.locate import DataPaths


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


def build_transformers(config: dict[str, Any], paths: DataPaths) -> nn.Module:
    """A ``transformers`` sequence classifier: from ``pretrained`` when given (a folder of that name under
    a data folder (``--data-dir``), else a local path or hub id as transformers reads it), else freshly
    initialized from ``model_type`` and the ``config`` fields (e.g. a tiny BERT)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if config["pretrained"]:
        source = paths.find_folder(config["pretrained"]) or config["pretrained"]
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=int(config["num_classes"]), **config["config"])
    else:
        hf_config = AutoConfig.for_model(config["model_type"], vocab_size=int(config["vocab_size"]),
                                         num_labels=int(config["num_classes"]),
                                         pad_token_id=int(config["pad_token_id"]), **config["config"])
        model = AutoModelForSequenceClassification.from_config(hf_config)
    return TextClassifier(model, config["pad_token_id"])
