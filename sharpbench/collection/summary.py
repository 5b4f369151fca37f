"""A collection card as loaded, summarized for a reader (`sharpbench collection show`): its dataset, shifts,
architecture with its parameter count, hyperparameters, number of models and sharpness protocol; nothing is
built, trained or downloaded."""

from __future__ import annotations

import json
from typing import Any

import torch

from sharpbench.collection.collection import bare_architecture
from sharpbench.collection.spec import CollectionSpec
from sharpbench.models.registry import architecture_config, build_model


def card_summary(spec: CollectionSpec) -> dict[str, Any]:
    """{name, description, card, dataset, ood, ood_shifts, architecture (with `parameters` for the card's number
    of classes), hyperparameters, seeds, n_models, training, max_train_error, loss, protocol}."""
    architecture: dict[str, Any] = dict(spec.architecture)
    counts = parameter_counts(spec)
    distinct = sorted(set(counts.values()))
    if len(distinct) == 1:
        architecture["parameters"] = distinct[0]
    elif distinct:
        architecture["parameters"] = {"min": distinct[0], "max": distinct[-1]}
        architecture["parameters_by_model"] = counts
    else:                   # an imported card lists its models in the folder's table, not here
        architecture["parameters"] = None
    return {
        "name": spec.name,
        "description": spec.description,
        "card": str(spec.path),
        "dataset": spec.dataset,
        "num_classes": spec.num_classes,
        "ood": [shift.name for shift in spec.shifts],
        "ood_shifts": [{"name": s.name, "kind": s.kind, "params": s.params} for s in spec.shifts],
        "architecture": architecture,
        "hyperparameters": hyperparameters(spec),
        "seeds": list(spec.seeds) if spec.trained else [],
        "n_models": spec.grid_size(),
        "training": spec.training if spec.trained else None,
        "max_train_error": spec.max_train_error,
        "loss": spec.loss,
        "protocol": {"n": spec.sharpness_data["n"], "m": spec.sharpness_data["m"],
                     "seed": spec.sharpness_data["seed"]},
    }


def hyperparameters(spec: CollectionSpec) -> dict[str, list[Any]]:
    """Each hyperparameter's values: the grid's, or for a card of checkpoints those its checkpoints list (in
    first-seen order); a field that only names a checkpoint's weights is left out."""
    if spec.trained:
        return {name: list(values) for name, values in spec.grid.items()}
    found: dict[str, list[Any]] = {}
    for checkpoint in spec.checkpoints:
        for name, value in checkpoint.hparams.items():
            if name not in spec.weight_fields and value not in found.setdefault(name, []):
                found[name].append(value)
    return found


def parameter_counts(spec: CollectionSpec) -> dict[str, int]:
    """Each model's number of parameters, from its architecture built on the meta device (no memory, no weights
    read or fetched); one build per distinct configuration."""
    bare = bare_architecture(spec.architecture)
    arch = {**spec.architecture, **bare}
    built: dict[str, int] = {}
    counts: dict[str, int] = {}
    for point in spec.model_points():
        hparams = {k: v for k, v in point.hparams.items() if k not in bare}
        config = json.dumps(architecture_config(arch, hparams), sort_keys=True, default=str)
        if config not in built:
            with torch.device("meta"):
                built[config] = sum(p.numel() for p in build_model(arch, hparams).parameters())
        counts[point.id] = built[config]
    return counts
