"""The measure author's API: what a measure receives (MeasureContext) and its many-model form (computes_many).

A measure is a function `fn(model, context, **params) -> float`, or a class whose instances are built
with `cls(**params)` and called as `instance(model, context) -> float`. A measure that can do several
same-architecture models at once (faster, for small models) also offers `many(models, context, **params)
-> list[float]` (see `computes_many`; for a class, a method `many(models, context)`). Its card names it with
`function: package.module:attribute` (an importable module) or `function: file.py:attribute` (a file
beside the card), and declares its parameters with types and defaults (read by
:mod:`sharpbench.cards.measure_card`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from sharpbench.losses import LossFn, cross_entropy

Batch = tuple[torch.Tensor, torch.Tensor]

# What a measure may read besides the model's weights, as its card declares it (`uses:`): the sharpness batches of
# training points (the default), unlabeled inputs of the test split, and other models of the collection trained
# with the same hyperparameters from other seeds. The leaderboard marks and ranks measures by it.
USES = ("training_data", "test_inputs", "other_models")


@dataclass
class MeasureContext:
    """Everything a measure may use besides the model.

    batches: the fixed sharpness batches (n training points in batches of m, the same for every model);
    loss_fn: mean cross-entropy (logits, labels) -> scalar; device: where model and batches live;
    generator: seeded afresh for each model, so values do not depend on evaluation order;
    num_classes: outputs of the classifier; initial_state: the weights at initialization, when kept;
    test_inputs: unlabeled inputs of the test split (n seeded points in batches of m), only for a measure whose
    card declares `uses: [test_inputs]`; siblings: the collection's other models with the same hyperparameters and
    another seed (eval mode, on `device`), only for a card that declares `uses: [other_models]`.
    """

    batches: list[Batch]
    device: torch.device
    generator: torch.Generator
    num_classes: int
    loss_fn: LossFn = cross_entropy
    initial_state: dict[str, torch.Tensor] | None = None
    test_inputs: list[torch.Tensor] | None = None
    siblings: list[torch.nn.Module] | None = None


def computes_many(many: Callable[..., list[float]]) -> Callable[[Callable], Callable]:
    """Decorator giving a measure function its many-model form: `many(models, context, **params)` must return,
    for each model, what the single function returns on it (same seed, same draws), whichever models it
    is given together. The context of a many-model call has no `initial_state`."""
    def mark(function: Callable) -> Callable:
        function.many = many
        return function
    return mark
