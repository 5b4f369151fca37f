"""compute_measure: one registered measure on any model and batches, for notebooks and scripts.

Imported by ``import sharpbench``, so it stays light: card discovery (which reads the collection cards and their
datasets' registry) is imported when the function is called, and the guard never loads the evaluation loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from sharpbench.evaluation.guard import infer_num_classes, run_guarded
from sharpbench.measure import Batch, MeasureContext


def compute_measure(name: str, model: nn.Module, batches: Sequence[Batch], *, seed: int = 0,
                    include_paths: Iterable[Path | str] = (), initial_state: dict[str, torch.Tensor] | None = None,
                    **params: Any) -> float:
    """Compute the registered measure `name` on `model` over `batches`, each one m-sharpness batch.

    `params` override the card's defaults (e.g. rho=0.001); `seed` seeds the generator the measure draws from;
    `initial_state` is the model's state_dict at initialization, for measures that need it (distance-from-init);
    `include_paths` are folders of cards of one's own. The measure runs in eval mode and the weights and batches
    are checked to be unchanged afterwards; each module's train/eval mode is restored, even when the measure
    fails. Batches are moved to the model's device.
    """
    from sharpbench.cards.discovery import find_measure  # the cards' registry loads every dataset and architecture

    spec = find_measure(name, include_paths)
    values = spec.bind(params)
    device = next(model.parameters()).device
    batches = [(inputs.to(device), labels.to(device)) for inputs, labels in batches]
    if not batches:
        raise ValueError("compute_measure needs at least one (inputs, labels) batch")
    modes = [(module, module.training) for module in model.modules()]
    try:
        model.eval()    # before the first forward pass: BatchNorm must not update its statistics
        context = MeasureContext(
            batches=batches,
            device=device,
            generator=torch.Generator(device=device).manual_seed(seed),
            num_classes=infer_num_classes(model, batches),
            initial_state=initial_state,
        )
        return run_guarded(spec, model, context, values)
    finally:
        for module, training in modes:
            module.train(training)
