"""Training recipes: the fields of a card's ``training`` section, their defaults, and the schedules.

``RECIPE_PARAMS`` lists the fields of a card's ``training`` section; any of them may instead be varied by
the card's grid. Add an optimizer or schedule by extending ``OPTIMIZERS`` / ``SCHEDULES``, a loss by
extending :data:`sharpbench.losses.LOSSES`.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from sharpbench.cards.schema import Param, in_range, non_negative, one_of, positive

Tensor = torch.Tensor


def _constant(base: float, step: int, total: int) -> float:
    return base


def _cosine(base: float, step: int, total: int) -> float:
    return base * 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))


def _cyclic(base: float, step: int, total: int) -> float:
    """The study's `cyclic` schedule: linear from 0 up to `base` at 40% of training, then linear down to 0, taken
    at the end of each step (as np.interp([t], [0, 2 epochs / 5, epochs], [0, lr, 0]) in the training code of
    tml-epfl/sam-low-rank-features, whose checkpoints are named like the study's; the study's own training code is
    not released)."""
    progress = (step + 1) / max(total, 1)
    return base * (progress / 0.4 if progress <= 0.4 else max(0.0, (1.0 - progress) / 0.6))


SCHEDULES: dict[str, Callable[[float, int, int], float]] = {"constant": _constant, "cosine": _cosine,
                                                            "cyclic": _cyclic}
OPTIMIZERS = ("sgd", "adam", "adamw")
AUGMENTATIONS = ("none", "flip", "crop", "crop_flip", "randaugment_crop_flip")




RECIPE_PARAMS: dict[str, Param] = {
    "optimizer": Param(str, default="sgd", check=one_of(*OPTIMIZERS)),
    "learning_rate": Param(float, check=positive),
    "batch_size": Param(int, check=positive),
    "epochs": Param(int, check=positive, note="the most, with stop_train_loss"),
    "momentum": Param(float, default=0.0, check=in_range(0, 1, closed="left")),
    "nesterov": Param(bool, default=False),
    "weight_decay": Param(float, default=0.0, check=non_negative),
    "schedule": Param(str, default="constant", check=one_of(*sorted(SCHEDULES))),
    "stop_train_loss": Param(float, default=0.0, check=non_negative,
                             note="0: train all epochs"),
    "augmentation": Param(str, default="none", check=one_of(*AUGMENTATIONS)),
    "crop_padding": Param(int, default=2, check=non_negative),
    "label_noise": Param(float, default=0.0, check=in_range(0, 1, closed="left")),
    "train_subset": Param(int, default=0, check=non_negative,
                          note="train on the first n training examples; 0: all of them"),
    "sam_rho": Param(float, default=0.0, check=non_negative, note="0: no SAM"),
    "group_size": Param(int, default=1, check=positive,
                        note="models trained at once, stacked and vmapped, where the grid allows; 1: one at a time"),
}


def recipe_config(recipe: dict[str, Any], hparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full recipe: defaults, then the card's ``training`` section, then the model's grid values."""
    config = {name: p.default for name, p in RECIPE_PARAMS.items() if p.default is not ...}
    config.update(recipe)
    for name, value in (hparams or {}).items():
        if name in RECIPE_PARAMS:
            config[name] = value
    missing = [name for name in RECIPE_PARAMS if name not in config]
    if missing:
        raise ValueError(f"training recipe needs {missing}")
    return config
