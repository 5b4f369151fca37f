"""Building a collection: under a lock, every model its source defines that no earlier build finished is produced
and saved (weights, initial weights, per-example outcomes, then its record, each written atomically), then the
manifest is written from the records. An interrupted build resumes from the records; a collection built before
per-example outcomes were kept (or pulled, or imported) gets them from its verified checkpoints, untrained."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any, Iterator, Protocol

import torch
from torch import nn

from sharpbench.collection.collection import Collection
from sharpbench.collection.files import (CHECKPOINTS, OUTCOMES, RECORDS, build_lock, deterministic, file_sha256,
                                         model_files)
from sharpbench.collection.manifest import MANIFEST_FORMAT, write_manifest
from sharpbench.collection.records import AGGREGATE_KEYS, MODEL_KEYS, ModelRecord
from sharpbench.collection.sources import ModelSource, Produced, evaluation_sets, source_for
from sharpbench.collection.spec import ModelPoint
from sharpbench.data.outcomes import Outcomes, aggregates, encode, mismatches, set_names
from sharpbench.data.registry import DATASETS
from sharpbench.data.sets import DatasetSplits, EvalSet, score_outcomes
from sharpbench.errors import CollectionError, Hint
from sharpbench.jsonsafe import finite_or_none
from sharpbench.losses import LOSSES
from sharpbench.paths import atomic_write
from sharpbench.version import __version__


def build_collection(collection: Collection, progress: bool = True, force: bool = False, workers: int = 1,
                     device: torch.device | str = "cpu", source: ModelSource | None = None,
                     executor: BuildExecutor | None = None) -> Collection:
    """Produce every model of the collection's source that no earlier build finished, then write manifest.json.

    Does nothing when the collection is already built from this card (unless ``force``, which deletes the folder
    first), except add the per-example outcomes of a collection built (or pulled, or imported) before they were
    kept: each kept model is scored from its verified checkpoint, never trained. ``workers`` > 1 trains that many
    models at a time in separate processes (one thread each: the same bits as one worker); for a card of
    checkpoints, ``workers`` processes read its data. ``device`` trains and scores there (e.g. cuda); files are
    saved from the CPU. ``source`` defaults to the card's (:func:`sharpbench.collection.sources.source_for`).
    ``executor`` produces the models elsewhere (a Ray cluster: :class:`sharpbench.evaluation.cluster.RayExecutor`);
    this process still saves every file and record as models come back."""
    if workers < 1:
        raise CollectionError(f"--workers must be at least 1 (got {workers})")
    builder = Builder(collection, source or source_for(collection.spec, collection.paths), torch.device(device),
                      workers, progress, executor)
    builder.run(force)
    return collection


class BuildExecutor(Protocol):
    """Produces models away from this process (a Ray cluster), yielding each (point, what was produced, seconds,
    the device it was produced on) as it finishes; the builder saves them."""

    def produce(self, collection: Collection, source: ModelSource, points: list[ModelPoint],
                score: bool) -> Iterator[tuple[ModelPoint, Produced, float, str]]: ...


def produce_remote(collection: Collection, source: ModelSource, point: ModelPoint, device: torch.device,
                   score: bool) -> tuple[Produced, float]:
    """Produce one model as a build worker does (its own builder, the data on the device, deterministic for a
    trained card), without saving it: what a cluster's task runs. Returns it with the seconds it took."""
    builder = Builder(collection, source, device, 1, False)
    data = _worker_data(collection, device) if score else None
    started = time.perf_counter()
    with deterministic(device) if collection.spec.trained else contextlib.nullcontext():
        produced = source.produce(point, data, builder.score)  # type: ignore[arg-type]
    return produced, time.perf_counter() - started


class Builder:
    """One build of one collection from one source."""

    def __init__(self, collection: Collection, source: ModelSource, device: torch.device, workers: int,
                 progress: bool, executor: BuildExecutor | None = None) -> None:
        self.collection, self.spec, self.root = collection, collection.spec, collection.root
        self.source, self.device, self.workers, self.progress = source, device, workers, progress
        self.executor = executor

    def run(self, force: bool, score: bool = True) -> None:
        """Build (see :func:`build_collection`); without ``score``, models that a source does not score keep no
        outcomes (an import: `collection build` adds them later)."""
        collection = self.collection
        if self.spec.imported and (force or not collection.is_built()):
            self.source.points()         # an imported card without its table says how to import it
        with build_lock(self.root):
            if force:
                for child in (CHECKPOINTS, RECORDS, OUTCOMES):
                    shutil.rmtree(self.root / child, ignore_errors=True)
                collection.manifest_path.unlink(missing_ok=True)
            elif collection.is_built():
                collection.forget()     # another process may have built it
                if score:
                    self._add_outcomes()
                return
            elif collection.read_manifest() is not None:   # (an unreadable one raises, naming the fix)
                raise collection.stale_error("manifest.json")
            collection.forget()
            for leftover in self.root.glob("**/.*.tmp-*"):     # half-written files of an interrupted build
                leftover.unlink(missing_ok=True)
            points = self.source.points()
            self._produce_missing(points, score)
            self._write_manifest(points, score)
            if score:
                self._add_outcomes()     # records an older version finished without them

    # -- producing models ------------------------------------------------------------------------------

    def _record_path(self, model_id: str) -> Path:
        return self.root / RECORDS / f"{model_id}.json"

    def finished_record(self, point: ModelPoint) -> dict[str, Any] | None:
        """The record of a model finished by an earlier (possibly interrupted) build, if it is intact."""
        path = self._record_path(point.id)
        try:
            record = json.loads(path.read_bytes())
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            return None
        if record.get("card_sha256") != self.spec.card_sha256:
            raise self.collection.stale_error(f"record {path.name}")
        if record.get("hparams") != point.hparams:
            return None
        if record.get("converged"):
            for relative, sha256 in model_files(record):
                file_path = self.root / relative
                if not file_path.is_file() or file_sha256(file_path) != sha256:
                    return None
        return record

    def _produce_missing(self, points: list[ModelPoint], score: bool) -> None:
        from tqdm.auto import tqdm

        todo = [p for p in points if self.finished_record(p) is None]
        if not todo:
            return
        bar = tqdm(total=len(points), initial=len(points) - len(todo), desc=f"building {self.spec.name}",
                   unit="model", disable=not self.progress, dynamic_ncols=True)
        try:
            for record in self._produce(todo, score):
                bar.set_postfix_str(f"last train error {record['train_error']}", refresh=False)
                bar.update(1)
        finally:
            bar.close()

    def _produce(self, todo: list[ModelPoint], score: bool) -> Iterator[dict[str, Any]]:
        """Produce the points in this process, or train them in ``workers`` spawned processes; yields each record.
        Only a grid is trained in worker processes (in groups where its card trains models together); a source
        that fetches or imports runs here."""
        if self.executor is not None:
            for point, produced, seconds, device in self.executor.produce(self.collection, self.source, todo, score):
                yield self.save(point, produced, seconds, device)
            return
        data = self.collection.data() if score else None
        groups = self._groups(todo) if score else [[point] for point in todo]
        wanted = frozenset(point.id for point in todo)
        if self.workers == 1 or len(groups) == 1 or not self.spec.trained:
            trained = self.spec.trained        # fetched or imported models are not trained: no deterministic mode
            if trained and data is not None:
                data = data.to(self.device)
            with deterministic(self.device) if trained else contextlib.nullcontext():
                for group in groups:
                    yield from self.produce_group(group, data, wanted)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn, not fork: a forked child of a process that already ran torch ops can deadlock in OpenMP
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(groups)),
                                   mp_context=multiprocessing.get_context("spawn"), initializer=_worker_start,
                                   initargs=(self.collection, self.source, self.device))
        try:
            futures = [pool.submit(_worker_produce, group, wanted) for group in groups]
            for future in as_completed(futures):
                yield from future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _groups(self, todo: list[ModelPoint]) -> list[list[ModelPoint]]:
        """The groups of the source's points that hold a point to do (each point alone for a source that does not
        train models together)."""
        grouping = getattr(self.source, "groups", None)
        if grouping is None:
            return [[point] for point in todo]
        wanted = {point.id for point in todo}
        return [group for group in grouping(self.source.points()) if any(point.id in wanted for point in group)]

    def produce_group(self, group: list[ModelPoint], data: DatasetSplits | None,
                      wanted: frozenset[str]) -> list[dict[str, Any]]:
        """Produce a group of models (one model, for a source that trains one at a time) and save those still to
        do; a group is trained whole, so a resumed build gives its finished members the same bits again."""
        if len(group) == 1:
            return [self.produce_one(group[0], data)]
        started = time.perf_counter()
        produced = self.source.produce_group(group, data, self.score)  # type: ignore[attr-defined]
        seconds = (time.perf_counter() - started) / len(group)
        return [self.save(point, made, seconds, str(self.device))
                for point, made in zip(group, produced) if point.id in wanted]

    def score(self, model: nn.Module, sets: dict[str, EvalSet]) -> dict[str, Outcomes]:
        """Per-example outcomes of ``model`` on ``sets`` (on the build's device; streamed sets show a bar of
        examples and are read by ``workers`` processes)."""
        from tqdm.auto import tqdm

        model.to(self.device).eval()
        total = sum(len(evalset) for evalset in sets.values())
        streamed = not all(evalset.in_memory for evalset in sets.values())
        with tqdm(total=total, desc="scoring", unit="example", leave=False,
                  disable=not (self.progress and streamed), dynamic_ncols=True) as bar:
            return {name: score_outcomes(model, evalset, self.spec.loss, self.device,
                                         workers=self.workers if streamed else 0, progress=bar.update)
                    for name, evalset in sets.items()}

    def produce_one(self, point: ModelPoint, data: DatasetSplits | None) -> dict[str, Any]:
        """Produce one model and save it: its files, then its record (the model counts as finished from there)."""
        started = time.perf_counter()
        produced = self.source.produce(point, data, self.score)  # type: ignore[arg-type]
        return self.save(point, produced, time.perf_counter() - started, str(self.device))

    def save(self, point: ModelPoint, produced: Produced, seconds: float, device: str) -> dict[str, Any]:
        """Save one produced model (here, or where a cluster's worker produced it on `device` in `seconds`): its
        files, then its record, from which the model counts as finished."""
        record: dict[str, Any] = {
            "id": point.id, "index": point.index, "hparams": point.hparams, "seed": point.seed,
            "card_sha256": self.spec.card_sha256, "converged": produced.converged,
            "train_error": produced.train_error, "train_loss": produced.train_loss, "epochs": produced.epochs,
            "device": device,
        }
        if produced.converged:
            record.update(self._save_checkpoints(point.id, produced))
            if produced.outcomes is not None:
                record.update(self._save_outcomes(point.id, record["sha256"], produced.outcomes))
            if produced.reported is not None:
                record.update(produced.reported)
        record["seconds"] = seconds
        record = finite_or_none(record)
        atomic_write(self._record_path(point.id), json.dumps(record, indent=1, allow_nan=False).encode())
        return record

    def _metadata(self, model_id: str, **more: str) -> dict[str, str]:
        return {"collection": self.spec.name, "model": model_id, **more}

    def _save_checkpoints(self, model_id: str, produced: Produced) -> dict[str, Any]:
        """Write a kept model's weights (and initial weights, when known); the record fields that name them."""
        from safetensors.torch import save as save_safetensors

        # one metadata key: safetensors writes several in a random order, and the sha256 must be stable
        metadata = {"sharpbench": json.dumps(self._metadata(model_id), sort_keys=True)}
        fields: dict[str, Any] = {"init_file": "", "init_sha256": ""}
        for key, suffix, state in (("file", "", produced.weights), ("init_file", ".init", produced.initial)):
            if state is None:
                continue
            relative = f"{CHECKPOINTS}/{model_id}{suffix}.safetensors"
            blob = state if isinstance(state, bytes) else save_safetensors(
                {k: v.detach().cpu().contiguous() for k, v in state.items()}, metadata)
            atomic_write(self.root / relative, blob)
            sha_key = "sha256" if key == "file" else "init_sha256"
            fields[key], fields[sha_key] = relative, hashlib.sha256(blob).hexdigest()
        return fields

    def _save_outcomes(self, model_id: str, checkpoint_sha256: str, outcomes: dict[str, Outcomes]) -> dict[str, Any]:
        """Write a kept model's per-example outcomes; the record fields that name the file, and the aggregate
        errors and losses, which are their means (asserted: the manifest never disagrees with its outcomes)."""
        expected = set_names(shift.name for shift in self.spec.shifts)
        assert list(outcomes) == expected, f"outcomes of sets {list(outcomes)}, expected {expected}"
        relative = f"{OUTCOMES}/{model_id}.safetensors"
        blob = encode(outcomes, self._metadata(model_id, checkpoint_sha256=checkpoint_sha256))
        atomic_write(self.root / relative, blob)
        fields = {"outcomes_file": relative, "outcomes_sha256": hashlib.sha256(blob).hexdigest(),
                  **aggregates(outcomes)}
        assert not mismatches(fields, outcomes, exact_error=True), "the aggregates are not the outcomes' means"
        return fields

    # -- the manifest ----------------------------------------------------------------------------------

    def _write_manifest(self, points: list[ModelPoint], scored: bool) -> None:
        records = []
        for point in points:
            record = self.finished_record(point)
            if record is None:
                raise CollectionError(f"model {point.id} of {self.spec.name} has no intact record after the build.",
                                      hints=[Hint("build", collection=self.spec.name)])
            records.append(record)
        spec = self.spec
        dataset: dict[str, Any] = dict(spec.dataset)
        measured: dict[str, Any] = {}
        if scored:
            data = self.collection.data()
            dataset.update(num_train=len(data.train), num_test=len(data.test), num_classes=spec.num_classes)
            generated = DATASETS[spec.dataset["name"]].data_files
            if generated is not None:       # data generated here: the sha256 of each set's file, as generated
                dataset["data_sha256"] = generated(spec.dataset, [(s.name, s.kind, s.params) for s in spec.shifts])
            measured = {"set_sizes": self._set_sizes(data)}
        manifest = {
            "format": MANIFEST_FORMAT, "collection": spec.name, "description": spec.description,
            "card": spec.path.name, "card_sha256": spec.card_sha256, "sharpbench_version": __version__,
            "torch_version": torch.__version__,
            **({"imported_from": str(self.source.folder.resolve())}  # type: ignore[attr-defined]
               if spec.imported else {}),
            "dataset": dataset,
            "shifts": [{"name": s.name, "kind": s.kind, "params": s.params} for s in spec.shifts],
            **measured,
            "architecture": spec.architecture, "training": spec.training, "grid": spec.grid,
            "max_train_error": spec.max_train_error,
            **({"protocol": self.collection.protocol()} if scored else {}),
            "loss": spec.loss,
            "build_time_seconds": round(sum(float(r.get("seconds") or 0.0) for r in records), 3),
            "models": [r for r in records if r["converged"]],
            "excluded": [{"id": r["id"], "hparams": r["hparams"], "train_error": r["train_error"],
                          "train_loss": r["train_loss"], "epochs": r.get("epochs")}
                         for r in records if not r["converged"]],
        }
        write_manifest(self.collection.manifest_path, manifest)
        self.collection.forget()

    def _set_sizes(self, data: DatasetSplits) -> dict[str, int]:
        """The number of examples of each evaluation set, by name."""
        hparams = self.spec.model_points()[0].hparams if self.spec.trained else {}
        return {name: len(evalset) for name, evalset in evaluation_sets(self.source, data, hparams, 0).items()}

    # -- outcomes of a collection built without them -----------------------------------------------------

    def _add_outcomes(self) -> None:
        """Score every kept model that has no outcomes from its verified checkpoint (no training), write its
        outcome file, and update its record and the manifest after each model, so an interrupted run keeps the
        models it finished. The recomputed errors must equal the manifest's (else the data or the code changed)."""
        from tqdm.auto import tqdm

        manifest = self.collection.manifest
        entries = manifest.get("models", [])
        todo = [entry for entry in entries if not entry.get("outcomes_file")]
        if not todo and "set_sizes" in manifest:
            return
        data = self.collection.data()
        manifest["set_sizes"] = self._set_sizes(data)
        if self.spec.trained:          # in-memory sets go to the device once; streamed ones are read batch by batch
            data = data.to(self.device)
        bar = tqdm(total=len(entries), initial=len(entries) - len(todo), desc=f"outcomes of {self.spec.name}",
                   unit="model", disable=not self.progress, dynamic_ncols=True)
        try:
            with deterministic(self.device):
                for entry in todo:
                    self._add_outcomes_of(entry, data)
                    self._rewrite_manifest(manifest)
                    bar.update(1)
        finally:
            bar.close()
        self._rewrite_manifest(manifest)

    def _add_outcomes_of(self, entry: dict[str, Any], data: DatasetSplits) -> None:
        """Score one manifest entry's checkpoint, check its aggregates, write its outcomes; updates ``entry``."""
        record = ModelRecord.from_json(entry)
        model = self.collection.load_model(record)
        outcomes = self.score(model, evaluation_sets(self.source, data, record.hparams, record.seed))
        if self.spec.imported:
            # the import table's numbers were measured elsewhere (their data, their evaluation): kept as reported,
            # while the aggregates become the means of the outcomes measured here, as for every other collection
            entry.setdefault("reported", {key: entry.get(key) for key in AGGREGATE_KEYS})
        else:
            differ = mismatches(entry, outcomes, exact_error=LOSSES[self.spec.loss].classification)
            if differ:
                raise CollectionError(
                    f"model {record.id} of {self.spec.name} scores differently now than when it was built "
                    f"({'; '.join(differ)}): the data or the code changed since.", hints=self.collection.fix)
        fields = self._save_outcomes(record.id, record.sha256, outcomes)
        entry.update({key: fields[key] for key in MODEL_KEYS if key in fields})
        path = self._record_path(record.id)
        try:                                                    # pulled: no records
            stored = json.loads(path.read_bytes())
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            return
        stored.update(fields)
        atomic_write(path, json.dumps(stored, indent=1, allow_nan=False).encode())

    def _rewrite_manifest(self, manifest: dict[str, Any]) -> None:
        """Write ``manifest`` atomically and forget the collection's cached copy."""
        write_manifest(self.collection.manifest_path, manifest)
        self.collection.forget()


_WORKER: tuple[Builder, DatasetSplits] | None = None
_DATA: dict[tuple[str, str, str], DatasetSplits] = {}


def _worker_data(collection: Collection, device: torch.device) -> DatasetSplits:
    """The collection's data on `device`, loaded once per worker process (a cluster reuses its workers)."""
    key = (collection.spec.card_sha256, str(collection.root), str(device))
    if key not in _DATA:
        data = collection.data()
        _DATA[key] = data.to(device) if collection.spec.trained else data
    return _DATA[key]


def _worker_start(collection: Collection, source: ModelSource, device: torch.device) -> None:
    """Set up one build worker process: its own builder, the data loaded once onto the device."""
    global _WORKER
    collection = Collection(collection.spec, collection.root, collection.paths)
    _WORKER = (Builder(collection, source, device, 1, False), collection.data().to(device))


def _worker_produce(group: list[ModelPoint], wanted: frozenset[str]) -> list[dict[str, Any]]:
    assert _WORKER is not None, "_worker_start did not run"
    builder, data = _WORKER
    with deterministic(builder.device):
        return builder.produce_group(group, data, wanted)
