"""The ways models enter a collection, behind one small protocol: the points a card defines, and one finished
model produced from a point. The builder (:mod:`sharpbench.collection.builder`) saves what a source produces,
the same way for every source.

- :class:`GridTraining`: a card's grid x seeds, each model trained here from its seed.
- :class:`PretrainedFetch`: a card's ``checkpoints`` section, each model's weights fetched (hub, cache, file).
- :class:`ImportedTable`: a folder of checkpoints trained elsewhere with a ``models.csv`` table
  (`sharpbench collection import DIR`); the table's numbers are kept as reported, and the model is scored later.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from sharpbench.collection.records import AGGREGATE_KEYS
from sharpbench.collection.spec import CollectionSpec, ModelPoint, model_id_for
from sharpbench.data.locate import DataPaths
from sharpbench.data.outcomes import Outcomes
from sharpbench.data.sets import DatasetSplits, EvalSet, prefix, seeded_subset
from sharpbench.errors import CollectionError, Hint
from sharpbench.losses import LOSSES
from sharpbench.models.registry import architecture_config, build_model
from sharpbench.training.labels import noisy_labels
from sharpbench.training.recipe import RECIPE_PARAMS, recipe_config
from sharpbench.training.grouped import group_key, train_group
from sharpbench.training.loop import train_model

# a kept model's evaluation sets -> its per-example outcomes on each (the builder binds device, loss, progress)
Scorer = Callable[[nn.Module, dict[str, EvalSet]], dict[str, Outcomes]]


@dataclass
class Produced:
    """One finished model of a source: its weights (a state dict, or the exact bytes of a safetensors file to
    keep), its initial weights when known, whether it passed the convergence filter, its train error and loss,
    its per-example outcomes (a kept model that was scored) or the aggregates a table reported (an import)."""

    weights: dict[str, torch.Tensor] | bytes
    initial: dict[str, torch.Tensor] | bytes | None
    converged: bool = True
    train_error: float | None = None
    train_loss: float | None = None
    epochs: int | None = None
    outcomes: dict[str, Outcomes] | None = None
    reported: dict[str, Any] | None = None


class ModelSource(Protocol):
    """Where a collection's models come from."""

    def points(self) -> list[ModelPoint]:
        """Every model the source defines, in a fixed order."""

    def train_set(self, data: DatasetSplits, hparams: dict[str, Any], seed: int) -> Dataset:
        """The set a model's train error is measured on (the labels it was trained on)."""

    def produce(self, point: ModelPoint, data: DatasetSplits, score: Scorer) -> Produced:
        """One finished model of ``point``; ``data`` is on the device the model is trained or scored on."""


def evaluation_sets(source: ModelSource, data: DatasetSplits, hparams: dict[str, Any], seed: int) -> dict[str, EvalSet]:
    """A kept model's evaluation sets: its train-evaluation set, the test set and each OOD set."""
    return data.evaluation_sets(source.train_set(data, hparams, seed))


@dataclass(frozen=True)
class GridTraining:
    """A card's grid x seeds, trained here: seeded initialization on the CPU (the same everywhere), the recipe,
    then the convergence filter on the train error (with label noise: against the noisy labels trained on)."""

    spec: CollectionSpec

    def points(self) -> list[ModelPoint]:
        return self.spec.model_points()

    def training_set(self, data: DatasetSplits, hparams: dict[str, Any], seed: int) -> TensorDataset:
        """What a model trains on: the training set (its first ``train_subset`` examples, where the card says so;
        a generated or shuffled set, so a random subset), with its labels (with label noise: the noisy ones)."""
        x_train, y_train = data.train_tensors()
        config = recipe_config(self.spec.training, hparams)
        if config["train_subset"]:
            if config["train_subset"] > len(x_train):
                raise CollectionError(f"train_subset {config['train_subset']} of {self.spec.name} is larger than its "
                                      f"training set ({len(x_train)} examples): lower it in {self.spec.path.name} "
                                      f"or enlarge the dataset's training set")
            x_train, y_train = x_train[:config["train_subset"]], y_train[:config["train_subset"]]
        noisy = noisy_labels(y_train.cpu(), config["label_noise"], self.spec.num_classes, seed).to(y_train.device)
        return TensorDataset(x_train, noisy)

    def train_set(self, data: DatasetSplits, hparams: dict[str, Any], seed: int) -> Dataset:
        """Where a kept model's train error and outcomes are measured: its training set, or, where the card's
        models train on prefixes of different sizes, the smallest prefix, which every model trained on (one set of
        examples for every model, as the per-example outcomes need)."""
        trained_on = self.training_set(data, hparams, seed)
        shared = self.spec.shared_train_subset
        return prefix(trained_on, shared) if shared else trained_on

    def produce(self, point: ModelPoint, data: DatasetSplits, score: Scorer) -> Produced:
        model, initial = self._initialized(point)
        trained_on = self.training_set(data, point.hparams, point.seed)
        x, y = trained_on.tensors
        model.to(x.device)
        epochs = train_model(model, x, y, self.spec.training, point.hparams, point.seed, self.spec.loss)
        return self._finished(model, initial, epochs, trained_on, evaluation_sets(self, data, point.hparams,
                                                                                   point.seed), score)

    def groups(self, points: list[ModelPoint]) -> list[list[ModelPoint]]:
        """The points trained together (``training.group_size`` > 1): in the card's order, chunks of at most that
        many among points whose architecture and shared recipe agree (:func:`group_key`); a point whose recipe
        cannot be grouped is a group of one. Formed from every point of the card, so that a resumed build trains
        the same groups."""
        size = int(self.spec.training.get("group_size", RECIPE_PARAMS["group_size"].default))
        by_key: dict[Any, list[ModelPoint]] = {}
        alone: list[list[ModelPoint]] = []
        for point in points:
            key = None if size == 1 else group_key(self.spec.training, point.hparams,
                                                   architecture_config(self.spec.architecture, point.hparams))
            if key is None:
                alone.append([point])
            else:
                by_key.setdefault(key, []).append(point)
        chunks = [members[i:i + size] for members in by_key.values() for i in range(0, len(members), size)]
        return sorted(chunks + alone, key=lambda group: group[0].index)

    def produce_group(self, points: list[ModelPoint], data: DatasetSplits, score: Scorer) -> list[Produced]:
        """The finished models of one group (:meth:`groups`), trained at once (:func:`train_group`)."""
        if len(points) == 1:
            return [self.produce(points[0], data, score)]
        started = [self._initialized(point) for point in points]
        trained_on = [self.training_set(data, point.hparams, point.seed) for point in points]
        x = trained_on[0].tensors[0]                  # a group shares its train_subset, so its inputs
        models = [model.to(x.device) for model, _ in started]
        epochs = train_group(models, x, [t.tensors[1] for t in trained_on], self.spec.training,
                             [p.hparams for p in points], [p.seed for p in points], self.spec.loss,
                             group_seed=points[0].index)
        return [self._finished(model, initial, ran, fit, evaluation_sets(self, data, point.hparams, point.seed),
                               score)
                for (model, initial), ran, fit, point in zip(started, epochs, trained_on, points)]

    def _initialized(self, point: ModelPoint) -> tuple[nn.Module, dict[str, torch.Tensor]]:
        """The point's model, initialized from its seed on the CPU (the same init everywhere), and a copy of it."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(point.seed)
            model = build_model(self.spec.architecture, point.hparams)
        return model, {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

    def _finished(self, model: nn.Module, initial: dict[str, torch.Tensor], epochs: int, trained_on: TensorDataset,
                  sets: dict[str, EvalSet], score: Scorer) -> Produced:
        """A trained model through the convergence filter (its error on everything it trained on); a kept one
        scored on every evaluation set."""
        fit = score(model, {"train": EvalSet(trained_on)})["train"]
        train_error, train_loss = fit.means()
        converged = math.isfinite(train_loss) and train_error <= self.spec.max_train_error
        outcomes = None
        if converged:       # the other sets are scored only for a kept model
            outcomes = {"train": fit} if len(sets["train"]) == len(trained_on) else {}   # the same examples
            outcomes.update(score(model, {k: v for k, v in sets.items() if k not in outcomes}))
        return Produced(model.state_dict(), initial, converged, train_error, train_loss, epochs, outcomes)


def _checkpoint_train_set(spec: CollectionSpec, data: DatasetSplits) -> Dataset:
    """A checkpoint trained elsewhere: its train error on the whole training set in memory, or on a seeded subset
    of ``train_eval_size`` examples of a streamed one."""
    if data.in_memory:
        return data.train
    return seeded_subset(data.train, spec.dataset["train_eval_size"], spec.sharpness_data["seed"])


@dataclass(frozen=True)
class PretrainedFetch:
    """A card's ``checkpoints`` section: each model's weights fetched (and its initial weights, when the card names
    them), then scored."""

    spec: CollectionSpec
    paths: DataPaths

    def points(self) -> list[ModelPoint]:
        return self.spec.model_points()

    def train_set(self, data: DatasetSplits, hparams: dict[str, Any], seed: int) -> Dataset:
        return _checkpoint_train_set(self.spec, data)

    def produce(self, point: ModelPoint, data: DatasetSplits, score: Scorer) -> Produced:
        checkpoint = self.spec.checkpoints[point.index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(point.seed)    # a head that fine-tuning would add starts the same everywhere
            model = self._fetch(point, point.hparams)
            initial = None if checkpoint.init is None else self._fetch(point, {**point.hparams, **checkpoint.init})
        outcomes = score(model, evaluation_sets(self, data, point.hparams, point.seed))
        train_error, train_loss = outcomes["train"].means()
        return Produced(model.state_dict(), None if initial is None else initial.state_dict(),
                        train_error=train_error, train_loss=train_loss, outcomes=outcomes)

    def _fetch(self, point: ModelPoint, hparams: dict[str, Any]) -> nn.Module:
        """The architecture with pretrained weights named by ``hparams`` (the hub, its cache, or a local file)."""
        try:
            return build_model(self.spec.architecture, hparams, self.paths)
        except (OSError, ValueError, RuntimeError) as error:
            raise CollectionError(
                f"cannot fetch the weights of checkpoint {point.id!r} of {self.spec.name} ({hparams}): "
                f"{type(error).__name__}: {error}. Go online (unset HF_HUB_OFFLINE) so the hub can be reached, or "
                f"put the weights in the Hugging Face cache ($HF_HOME) or in a local file the card names"
            ) from None


TABLE = "models.csv"
_REQUIRED = ("file", "init_file", "train_error", "test_error")


@dataclass(frozen=True)
class ImportedTable:
    """Checkpoints trained elsewhere: ``folder/models.csv`` lists one model per row (columns ``file`` and
    ``init_file``: safetensors paths relative to the folder; ``train_error``, ``test_error`` and
    ``ood_error/SHIFT`` per shift; optional ``id``, ``train_loss``, ``test_loss``, ``ood_loss/SHIFT``; every other
    column is a hyperparameter, a column named after an architecture field setting it for the row's model).
    Without a folder (a collection imported before), the source can only score: its points are gone."""

    spec: CollectionSpec
    paths: DataPaths
    folder: Path | None = None

    @cached_property
    def _rows(self) -> list[dict[str, str]]:
        """The table's rows, read and checked once per source (every model's point and record comes from them)."""
        if self.folder is None:
            raise CollectionError(
                f"collection {self.spec.name} is imported (its card {self.spec.path} says `imported: true`): it "
                f"cannot be trained here.", hints=[Hint("import", collection=self.spec.name)])
        table = self.folder / TABLE
        try:
            with open(table, newline="", encoding="utf-8-sig") as handle:    # a BOM is not part of a name
                reader = csv.DictReader(handle)
                reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
                rows = list(reader)
        except OSError as error:
            raise CollectionError(f"cannot read {table} ({error.strerror}): it lists the models, one row each, with "
                                  f"columns {', '.join(_REQUIRED)} and ood_error/SHIFT per shift") from None
        if not rows:
            raise CollectionError(f"{table} lists no models")
        needed = list(_REQUIRED) + [f"ood_error/{shift.name}" for shift in self.spec.shifts]
        missing = [c for c in needed if c not in rows[0]]
        if missing:
            raise CollectionError(f"{table} lacks the columns {missing} (it has {list(rows[0])})")
        return rows

    def _hparam_columns(self, columns: list[str]) -> list[str]:
        shifts = [s.name for s in self.spec.shifts]
        metrics = {*_REQUIRED, "id", "train_loss", "test_loss", *(f"ood_{kind}/{s}" for kind in ("error", "loss")
                                                                   for s in shifts)}
        return [c for c in columns if c not in metrics]

    def points(self) -> list[ModelPoint]:
        rows = self._rows
        hparam_columns = self._hparam_columns(list(rows[0]))
        points: list[ModelPoint] = []
        for row in rows:
            hparams = {c: _number(row[c].strip()) for c in hparam_columns if (row.get(c) or "").strip()}
            model_id = re.sub(r"[^A-Za-z0-9._+-]", "_", row.get("id") or "") or model_id_for(len(points), hparams)
            if any(p.id == model_id for p in points):
                raise CollectionError(f"{self.folder / TABLE} line {len(points) + 2}: id {model_id!r} is used twice")
            points.append(ModelPoint(len(points), model_id, hparams, int(hparams.get("seed", 0))))
        return points

    def train_set(self, data: DatasetSplits, hparams: dict[str, Any], seed: int) -> Dataset:
        return _checkpoint_train_set(self.spec, data)

    def produce(self, point: ModelPoint, data: DatasetSplits, score: Scorer) -> Produced:
        """The row's checkpoints, each loaded strictly into the card's architecture (a collection that imports is
        one that evaluates) and kept byte for byte, and the numbers the table reports; nothing is scored."""
        assert self.folder is not None
        row = self._rows[point.index]
        where = f"{self.folder / TABLE} line {point.index + 2}"
        blobs = [self._checkpoint(row[key].strip(), point.hparams, where) for key in ("file", "init_file")]
        shifts = [s.name for s in self.spec.shifts]
        rate = LOSSES[self.spec.loss].classification      # a classification error is a fraction of examples
        reported = {
            "train_error": _metric(row, "train_error", where, True, rate),
            "train_loss": _metric(row, "train_loss", where),
            "test_error": _metric(row, "test_error", where, True, rate), "test_loss": _metric(row, "test_loss", where),
            "ood_error": {s: _metric(row, f"ood_error/{s}", where, True, rate) for s in shifts},
            "ood_loss": {s: _metric(row, f"ood_loss/{s}", where) for s in shifts},
        }
        assert set(reported) == set(AGGREGATE_KEYS)
        return Produced(blobs[0], blobs[1], train_error=reported["train_error"], train_loss=reported["train_loss"],
                        reported=reported)

    def _checkpoint(self, relative: str, hparams: dict[str, Any], where: str) -> bytes:
        from safetensors import SafetensorError
        from safetensors.torch import load as load_safetensors

        assert self.folder is not None
        path = (self.folder / relative).resolve()
        if not path.is_relative_to(self.folder.resolve()):
            raise CollectionError(f"{where}: checkpoint path {relative!r} leads outside {self.folder}; put the "
                                  f"checkpoint under {self.folder} and give its path relative to it")
        try:
            blob = path.read_bytes()
        except OSError:
            raise CollectionError(f"{where}: checkpoint {path} does not exist") from None
        try:
            state = load_safetensors(blob)
        except (SafetensorError, ValueError) as error:
            raise CollectionError(f"{where}: {path} is not a safetensors file ({error}); convert a torch state dict "
                                  f"with safetensors.torch.save_file(model.state_dict(), PATH)") from None
        try:
            model = build_model(self.spec.architecture, hparams, self.paths)
        except ValueError as error:
            raise CollectionError(f"{where}: {error}: give it in the card's architecture or as a column of "
                                  f"{TABLE}") from None
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise CollectionError(f"{where}: {path} does not fit the card's architecture ({error})") from None
        return blob


def _number(text: str) -> Any:
    """A CSV cell as int, float or (when neither) the text itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _metric(row: dict[str, str], column: str, where: str, required: bool = False, rate: bool = False
            ) -> float | None:
    """A number of the table; an empty optional cell is None; a ``rate`` (a classification error) lies in [0, 1]."""
    text = (row.get(column) or "").strip()
    if not text:
        if required:
            raise CollectionError(f"{where}: column '{column}' is empty; give the model's {column.replace('_', ' ')}")
        return None
    try:
        value = float(text)
    except ValueError:
        raise CollectionError(f"{where}: column '{column}' holds {text!r}, not a number") from None
    if not math.isfinite(value):
        raise CollectionError(f"{where}: column '{column}' holds {text!r}, not a finite number")
    if rate and not 0 <= value <= 1:
        raise CollectionError(f"{where}: column '{column}' holds {text!r}, but a classification error is a fraction "
                              f"in [0, 1]; give it as a fraction (0.05 for 5%)")
    return value


def source_for(spec: CollectionSpec, paths: DataPaths, folder: Path | None = None) -> ModelSource:
    """The source of a card's models: its grid, its checkpoints, or (imported) the table in ``folder``; pretrained
    weights named by a relative path are found in ``paths``."""
    if spec.imported:
        return ImportedTable(spec, paths, folder)
    return PretrainedFetch(spec, paths) if spec.checkpoints else GridTraining(spec)
