"""A collection card, parsed and validated: the dataset, OOD shifts, architecture, grid, seeds, recipe,
convergence filter and sharpness-data protocol, each checked against the registries of :mod:`sharpbench.data`,
:mod:`sharpbench.models` and :mod:`sharpbench.training`."""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sharpbench.cards.include import load_card
from sharpbench.cards.schema import (NAME_PATTERN, Param, check_type, check_value, entries, field, in_range, one_of,
                                     positive, reject_unknown, validate)
from sharpbench.data.registry import DATASETS, SHIFTS
from sharpbench.errors import CardError
from sharpbench.losses import LossFn
from sharpbench.models.registry import ARCHITECTURES
from sharpbench.losses import LOSSES
from sharpbench.training.recipe import RECIPE_PARAMS

_CARD_FIELDS = {"name", "description", "dataset", "ood_shifts", "architecture", "grid", "seeds", "training",
                "convergence", "sharpness_data", "loss", "imported", "checkpoints"}
# Sections only a card that is trained has; an imported card (``imported: true``) describes checkpoints
# trained elsewhere, and its models come from `sharpbench collection import`.
_TRAINING_FIELDS = ("grid", "seeds", "training", "convergence")




@dataclass(frozen=True)
class ShiftSpec:
    """One OOD test set: the test split transformed by shift ``kind`` with ``params`` (defaults filled in)."""

    name: str
    kind: str
    params: dict[str, Any]


@dataclass(frozen=True)
class CheckpointSpec:
    """One pretrained model of a card's ``checkpoints`` section, fetched (not trained) by the build.

    ``hparams``: architecture fields that name its weights (a timm ``model`` with a pretrained tag, a hub id or
    file as ``pretrained``) and any training hyperparameters known about it (scored like a grid's);
    ``init``: architecture fields that fetch its weights before fine-tuning, if known."""

    id: str
    hparams: dict[str, Any]
    init: dict[str, Any] | None = None


@dataclass(frozen=True)
class ModelPoint:
    """One model the grid defines: its position, id, hyperparameters (as in the manifest) and seed."""

    index: int
    id: str
    hparams: dict[str, Any]
    seed: int


@dataclass(frozen=True)
class CollectionSpec:
    """A parsed, validated collection card."""

    name: str
    description: str
    path: Path
    card_sha256: str
    dataset: dict[str, Any]            # {name, ...the dataset kind's fields}, defaults filled in
    shifts: tuple[ShiftSpec, ...]
    architecture: dict[str, Any]       # {kind, ...fixed fields}, in_features / num_classes from the dataset
    grid: dict[str, list[Any]]         # hparam -> values, in card order
    seeds: tuple[int, ...]
    training: dict[str, Any]           # fixed recipe fields (those not in the grid), defaults filled in
    max_train_error: float
    sharpness_data: dict[str, int]     # {n, m, seed}
    loss: str = "cross_entropy"        # a key of sharpbench.training.recipe.LOSSES: what is trained and measured
    imported: bool = False             # checkpoints trained elsewhere: no grid, never built here
    checkpoints: tuple[CheckpointSpec, ...] = ()   # pretrained models the build fetches instead of a grid

    @property
    def trained(self) -> bool:
        """True for a card whose models are trained here (a grid), False for imported or fetched checkpoints."""
        return not (self.imported or self.checkpoints)

    @property
    def weight_fields(self) -> frozenset[str]:
        """Hyperparameters that name a checkpoint's weights (a timm model name, a hub id) rather than describe how
        it was trained: kept in the manifest, left out of scoring."""
        arch = ARCHITECTURES[self.architecture["kind"]].params
        return frozenset(k for c in self.checkpoints for k in c.hparams if k in arch)

    @property
    def shared_train_subset(self) -> int:
        """The number of training examples every model was trained on where the card trains models on the first
        ``train_subset`` examples (the smallest value); 0 when every model trains on the whole training set."""
        sizes = self.grid.get("train_subset") or [self.training.get("train_subset", 0)]
        return 0 if 0 in sizes else int(min(sizes))

    def grid_size(self) -> int:
        """Number of models the grid defines (grid points x seeds), before the convergence filter; for a card of
        checkpoints, their number; 0 if imported."""
        if not self.trained:
            return len(self.checkpoints)
        return math.prod(len(values) for values in self.grid.values()) * len(self.seeds)

    @property
    def num_classes(self) -> int:
        return DATASETS[self.dataset["name"]].num_classes

    @property
    def loss_fn(self) -> LossFn:
        """The loss the models were trained on, (outputs, targets) -> mean loss; sharpness is measured on it."""
        return LOSSES[self.loss][0]

    def model_points(self) -> list[ModelPoint]:
        """Every model of the grid, in a fixed order (seeds outermost, then the grid in card order).

        The manifest's hparams are the grid values, plus ``seed`` when the card lists several seeds. A card of
        checkpoints has one point per checkpoint, in card order."""
        if self.checkpoints:
            return [ModelPoint(i, c.id, dict(c.hparams), int(c.hparams.get("seed", 0)))
                    for i, c in enumerate(self.checkpoints)]
        names = list(self.grid)
        points: list[ModelPoint] = []
        for seed in () if not self.trained else self.seeds:
            for values in itertools.product(*(self.grid[name] for name in names)):
                hparams = dict(zip(names, values))
                if len(self.seeds) > 1:
                    hparams["seed"] = seed
                index = len(points)
                points.append(ModelPoint(index, model_id_for(index, hparams), hparams, seed))
        return points


def _abbreviation(name: str) -> str:
    return "".join(word[0] for word in name.split("_") if word)


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return re.sub(r"[^A-Za-z0-9.+]", "", str(value))


def model_id_for(index: int, hparams: dict[str, Any]) -> str:
    """A readable, file-safe id such as ``017-lr0.1-bs32-w128-wd0.0005`` (the index keeps it unique)."""
    parts = [f"{index:03d}"] + [f"{_abbreviation(k)}{_value_text(v)}" for k, v in hparams.items()]
    return "-".join(parts)


def _choice(value: Any, path: Path, name: str, options: dict[str, Any]) -> str:
    """A kind or name that must be a key of one of the registries."""
    return check_value(value, path, name, Param(str, check=one_of(*sorted(options))))


def _check_shift_applies(kind: str, dataset_name: str, path: Path, name: str) -> None:
    """A shift names the datasets it applies to; one that names none applies to any dataset with an image shape."""
    datasets = SHIFTS[kind].datasets
    if datasets is None:
        if not DATASETS[dataset_name].image_shape:
            raise CardError(path, name, f"a shift for dataset {dataset_name} ({kind} transforms images, and "
                                        f"{dataset_name} has no image shape)", kind)
    elif dataset_name not in datasets:
        raise CardError(path, name, f"a shift for dataset {dataset_name} ({kind} applies to {', '.join(datasets)} "
                                    f"only)", kind)


_CONVERGENCE = {"max_train_error": Param(float, check=in_range(0, 1))}
_SHARPNESS_DATA = {"n": Param(int, check=positive), "m": Param(int, check=positive), "seed": Param(int)}


def load_collection_spec(path: Path) -> CollectionSpec:
    """Read and fully validate a collection card; every mistake is a CardError naming file and field."""
    loaded = load_card(Path(path))
    path, card = loaded.path, loaded.fields
    reject_unknown(card, path, _CARD_FIELDS)

    name = field(card, path, "name", str)
    if not NAME_PATTERN.match(name):
        raise CardError(path, "name", "lower-case letters, digits, '.', '_' or '-' (it names a folder)", name)
    description = field(card, path, "description", str)

    # dataset
    dataset_raw = field(card, path, "dataset", dict)
    if "name" not in dataset_raw:
        raise CardError(path, "dataset.name", f"one of {sorted(DATASETS)} (the field is required)")
    dataset_name = _choice(dataset_raw["name"], path, "dataset.name", DATASETS)
    dataset_kind = DATASETS[dataset_name]
    dataset = {"name": dataset_name, **validate({k: v for k, v in dataset_raw.items() if k != "name"},
                                                path, "dataset.", dataset_kind.params)}

    # OOD shifts
    shifts_raw = field(card, path, "ood_shifts", list)
    shifts: list[ShiftSpec] = []
    for where, entry in entries(shifts_raw, path, "ood_shifts", ("name", "kind", "params")):
        if "name" not in entry:
            raise CardError(path, f"{where}.name", "a string (the field is required)")
        shift_name = check_type(entry["name"], path, f"{where}.name", str)
        if not NAME_PATTERN.match(shift_name):
            raise CardError(path, f"{where}.name", "lower-case letters, digits, '.', '_' or '-'", shift_name)
        if any(s.name == shift_name for s in shifts):
            raise CardError(path, f"{where}.name", "a name not used by another shift", shift_name)
        # a streamed dataset offers OOD sets of its own (with their own labels) instead of shifts of its test set
        # (and an in-memory one may offer sets of its own beside the shifts: MNIST-1D's generator)
        schemas = (dataset_kind.ood_sets if dataset_kind.stream
                   else {**{k: v.params for k, v in SHIFTS.items()}, **dataset_kind.ood_sets})
        kind = _choice(entry.get("kind"), path, f"{where}.kind", schemas)
        if not dataset_kind.stream and kind in SHIFTS:
            _check_shift_applies(kind, dataset_name, path, f"{where}.kind")
        params = validate(entry.get("params", {}) or {}, path, f"{where}.params.", schemas[kind])
        shifts.append(ShiftSpec(shift_name, kind, params))

    imported = field(card, path, "imported", bool, default=False)
    checkpoints_raw = field(card, path, "checkpoints", list, default=[])
    if imported and checkpoints_raw:
        raise CardError(path, "checkpoints", "no such section in an imported card (its models come from importing "
                                             "a folder)", "a list")
    untrained = imported or bool(checkpoints_raw)
    if dataset_kind.stream is not None and not untrained:
        raise CardError(path, "dataset.name", f"a dataset held in memory: {dataset_name} is streamed from disk, for "
                                              f"cards of pretrained checkpoints (a `checkpoints` section) or imported "
                                              f"ones, not trained here", dataset_name)
    if untrained:
        for key in _TRAINING_FIELDS:
            if key in card:
                what = "an imported card" if imported else "a card of pretrained checkpoints"
                raise CardError(path, key, f"no such section in {what} (its models were trained elsewhere; remove "
                                           f"the field)", card[key])
    default_loss = "mse" if dataset_kind.task == "regression" else "cross_entropy"
    loss = field(card, path, "loss", str, default=default_loss)
    if loss not in LOSSES:
        raise CardError(path, "loss", f"one of {sorted(LOSSES)}", loss)
    if (loss == "cross_entropy") != (dataset_kind.task == "classification"):
        raise CardError(path, "loss", f"a loss for a {dataset_kind.task} dataset ({default_loss})", loss)

    # architecture (fixed fields; the grid may vary the others)
    grid_raw = {} if untrained else field(card, path, "grid", dict)
    arch_raw = field(card, path, "architecture", dict)
    arch_kind_name = _choice(arch_raw.get("kind"), path, "architecture.kind", ARCHITECTURES)
    arch_schema = ARCHITECTURES[arch_kind_name].params
    arch_fixed = {k: v for k, v in arch_raw.items() if k != "kind"}
    checkpoints = _checkpoint_specs(checkpoints_raw, path, arch_schema, arch_fixed)
    per_model = {k for c in checkpoints for k in c.hparams if k in arch_schema}
    derived = dataset_kind.architecture_fields(dataset)   # fields that follow from the dataset, never varied
    gridable = {**{k: p for k, p in arch_schema.items() if k not in derived}, **RECIPE_PARAMS}
    for key in grid_raw:
        if key not in gridable:
            raise CardError(path, f"grid.{key}",
                            f"a training or architecture field, one of {sorted(gridable)}", key)
    for key in grid_raw:
        if key in arch_fixed:
            raise CardError(path, f"grid.{key}", f"a field not also fixed in architecture (architecture.{key})",
                            key)
    for key, value in derived.items():
        if key in arch_schema:
            if key in arch_fixed and arch_fixed[key] != value:
                raise CardError(path, f"architecture.{key}", f"{value} (given by dataset {dataset_name})",
                                arch_fixed[key])
            arch_fixed[key] = value
    architecture = {"kind": arch_kind_name,
                    **validate(arch_fixed, path, "architecture.", arch_schema, skip=set(grid_raw) | per_model,
                               require=not imported)}

    # training recipe (fixed fields; the grid may vary the others)
    training_raw = {} if untrained else field(card, path, "training", dict)
    for key in grid_raw:
        if key in training_raw:
            raise CardError(path, f"grid.{key}", f"a field not also fixed in training (training.{key})", key)
    training = {} if untrained else validate(training_raw, path, "training.", RECIPE_PARAMS, skip=set(grid_raw))

    # grid
    if not grid_raw and not untrained:
        raise CardError(path, "grid", "a mapping hparam -> list of values with at least one entry", grid_raw)
    grid: dict[str, list[Any]] = {}
    for key, values in grid_raw.items():
        if not isinstance(values, list) or not values:
            raise CardError(path, f"grid.{key}", "a non-empty list of values", values)
        checked = [check_value(v, path, f"grid.{key}[{i}]", gridable[key]) for i, v in enumerate(values)]
        if len(set(map(repr, checked))) != len(checked):
            raise CardError(path, f"grid.{key}", "a list without repeated values", values)
        grid[key] = checked

    # seeds
    seeds_raw = [0] if untrained else field(card, path, "seeds", list)
    if not seeds_raw:
        raise CardError(path, "seeds", "a non-empty list of integers", seeds_raw)
    seeds = tuple(check_type(s, path, f"seeds[{i}]", int) for i, s in enumerate(seeds_raw))
    if len(set(seeds)) != len(seeds):
        raise CardError(path, "seeds", "a list without repeated seeds", seeds_raw)

    # convergence filter
    convergence = validate({"max_train_error": 1.0} if untrained else field(card, path, "convergence", dict),
                           path, "convergence.", _CONVERGENCE)

    # sharpness-data protocol
    sharpness = validate(field(card, path, "sharpness_data", dict), path, "sharpness_data.", _SHARPNESS_DATA)
    if sharpness["m"] > sharpness["n"]:
        raise CardError(path, "sharpness_data.m", f"an integer <= n ({sharpness['n']})", sharpness["m"])

    return CollectionSpec(
        name=name, description=description, path=path, card_sha256=loaded.sha256,
        dataset=dataset, shifts=tuple(shifts), architecture=architecture, grid=grid, seeds=seeds,
        training=training, max_train_error=convergence["max_train_error"], sharpness_data=sharpness,
        loss=loss, imported=imported, checkpoints=checkpoints,
    )


def _checkpoint_specs(section: list[Any], path: Path, arch_schema: dict[str, Param],
                      arch_fixed: dict[str, Any]) -> tuple[CheckpointSpec, ...]:
    """The validated ``checkpoints`` section: unique ids, and architecture fields of the right type."""
    checkpoints: list[CheckpointSpec] = []
    for where, entry in entries(section, path, "checkpoints", ("id", "hparams", "init")):
        model_id = check_type(entry.get("id"), path, f"{where}.id", str)
        if not NAME_PATTERN.match(model_id) or any(c.id == model_id for c in checkpoints):
            raise CardError(path, f"{where}.id", "a unique name of lower-case letters, digits, '.', '_' or '-'",
                            model_id)
        fetched: dict[str, dict[str, Any] | None] = {}
        for key in ("hparams", "init"):
            values = entry.get(key, {} if key == "hparams" else None)
            if values is None:
                fetched[key] = None
                continue
            values = check_type(values, path, f"{where}.{key}", dict)
            for name, value in values.items():
                if name in arch_fixed:
                    raise CardError(path, f"{where}.{key}.{name}", f"a field not also fixed in architecture "
                                                                   f"(architecture.{name})", value)
                if name in arch_schema:
                    check_value(value, path, f"{where}.{key}.{name}", arch_schema[name])
                elif key == "init":
                    raise CardError(path, f"{where}.init.{name}", f"an architecture field, one of "
                                                                  f"{sorted(arch_schema)}", name)
                elif not isinstance(value, (int, float, str, bool)):
                    raise CardError(path, f"{where}.hparams.{name}", "a number or a string", value)
            fetched[key] = dict(values)
        checkpoints.append(CheckpointSpec(model_id, fetched["hparams"] or {}, fetched["init"]))
    return tuple(checkpoints)
