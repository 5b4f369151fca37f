"""Collections: a card (spec) -> trained checkpoints + manifest.json, resumable, verified on load.

A collection card (``registry/collections/NAME.yaml``) declares the dataset, the OOD shifts, the
architecture, a hyperparameter grid, the seeds, the training recipe, a convergence filter and the
sharpness-data protocol. Each section is validated against the registries in :mod:`sharpbench.data.registry`,
:mod:`sharpbench.models.registry` and :mod:`sharpbench.training.recipe`, so a new dataset, shift, architecture or recipe
field is an entry there, not a special case here.

On disk (``sharpbench_home()/collections/NAME``)::

    checkpoints/ID.safetensors        trained weights of a kept model
    checkpoints/ID.init.safetensors   its weights before training
    outcomes/ID.safetensors           its per-example error and loss on every evaluation set
                                      (:mod:`sharpbench.data.outcomes`)
    records/ID.json                   one per finished model (kept or excluded), written atomically last:
                                      a build that is interrupted resumes from these
    manifest.json                     written at the end from the records

A collection whose manifest names no outcomes (built before they were kept, or imported) loads and evaluates as
before; building it again scores each kept model from its verified checkpoint and adds its outcomes, untrained.

Nothing here unpickles: checkpoints are safetensors, checked against their sha256 before loading.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from sharpbench.collection.spec import CollectionSpec, ModelPoint
from sharpbench.data.registry import DATASETS, apply_shift, load_dataset
from sharpbench.errors import CollectionError
from sharpbench.jsonsafe import finite_or_none
from sharpbench.models.registry import ARCHITECTURES, build_model
from sharpbench.paths import sharpbench_home
from sharpbench.losses import LossFn
from sharpbench.data.outcomes import Outcomes, aggregates, decode, encode, mismatches, set_names
from sharpbench.data.streams import EvalSet, StreamedData, seeded_subset, stack, stream_outcomes
from sharpbench.training.recipe import LOSSES, evaluate_outcomes, noisy_labels, recipe_config, train_model
from sharpbench.version import __version__

MANIFEST = "manifest.json"
CHECKPOINTS = "checkpoints"
RECORDS = "records"
OUTCOMES = "outcomes"
# 2: each kept model names its outcome file and the manifest gives the size of each evaluation set. A manifest
# without them (format 1, or an import not scored yet) still loads; `collection build` adds them.
MANIFEST_FORMAT = 2
# the fields of a kept model's manifest entry, in order: the aggregates are the means of its outcomes, and an
# imported model keeps the numbers its table reported under "reported"
AGGREGATE_KEYS = ("train_error", "train_loss", "test_error", "test_loss", "ood_error", "ood_loss")
MODEL_KEYS = ("id", "hparams", "seed", "file", "sha256", "init_file", "init_sha256", "outcomes_file",
              "outcomes_sha256", *AGGREGATE_KEYS, "reported")

def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, as the manifest records it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ModelRecord:
    """One kept (converged) model of a built collection, as listed in manifest.json."""

    id: str
    hparams: dict[str, float | int | str]
    file: str            # path relative to the collection root
    sha256: str
    init_file: str
    init_sha256: str
    train_error: float
    train_loss: float
    test_error: float
    test_loss: float
    ood_error: dict[str, float]
    ood_loss: dict[str, float]
    seed: int = 0
    outcomes_file: str = ""      # "" for a collection built before outcomes existed
    outcomes_sha256: str = ""

    def __hash__(self) -> int:  # the dict fields are not hashable; id and checkpoint hash identify a record
        return hash((self.id, self.sha256))

    @property
    def gen_gap(self) -> float:
        """Generalization gap: test error - train error."""
        return self.test_error - self.train_error

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "hparams": dict(self.hparams), "seed": self.seed,
            "file": self.file, "sha256": self.sha256, "init_file": self.init_file, "init_sha256": self.init_sha256,
            "outcomes_file": self.outcomes_file, "outcomes_sha256": self.outcomes_sha256,
            "train_error": self.train_error, "train_loss": self.train_loss,
            "test_error": self.test_error, "test_loss": self.test_loss,
            "ood_error": dict(self.ood_error), "ood_loss": dict(self.ood_loss),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModelRecord":
        return cls(
            id=str(data["id"]), hparams=dict(data["hparams"]), seed=int(data.get("seed", 0)),
            file=str(data["file"]), sha256=str(data["sha256"]),
            init_file=str(data["init_file"]), init_sha256=str(data["init_sha256"]),
            outcomes_file=str(data.get("outcomes_file", "")), outcomes_sha256=str(data.get("outcomes_sha256", "")),
            train_error=float(data["train_error"]), train_loss=_float_or_nan(data["train_loss"]),
            test_error=float(data["test_error"]), test_loss=_float_or_nan(data["test_loss"]),
            ood_error={k: float(v) for k, v in data["ood_error"].items()},
            ood_loss={k: _float_or_nan(v) for k, v in data["ood_loss"].items()},
        )


def _float_or_nan(value: Any) -> float:
    """A manifest number; null (a loss an imported collection did not report) reads as NaN."""
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class CollectionData:
    """The tensors of a collection's dataset: train and test splits and one shifted test input per shift."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    ood_inputs: dict[str, torch.Tensor] = dataclass_field(default_factory=dict)  # labels are y_test

    def to(self, device: torch.device) -> "CollectionData":
        """The same tensors on ``device`` (this object itself when they are there already)."""
        if self.x_train.device == device:
            return self
        return CollectionData(self.x_train.to(device), self.y_train.to(device), self.x_test.to(device),
                              self.y_test.to(device), {k: v.to(device) for k, v in self.ood_inputs.items()})


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and os.replace, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """One intra-op CPU thread (results of CPU matmuls depend on the thread count) and deterministic algorithms
    (on a GPU: where torch has them, with cuBLAS's deterministic workspace); restores the caller's settings."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


@contextlib.contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """An advisory lock so two processes that build the same collection do not both train it."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(root / ".build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------- collection


class Collection:
    """A collection on disk: built from its spec (resumable), read through its manifest, verified on load."""

    def __init__(self, spec: CollectionSpec, root: Path) -> None:
        self.spec = spec
        self.root = Path(root)
        self._manifest: dict[str, Any] | None = None
        self._manifest_bytes: bytes | None = None
        self._data: CollectionData | None = None
        self._models: list[ModelRecord] | None = None

    def __repr__(self) -> str:
        return f"Collection({self.spec.name!r}, root={str(self.root)!r}, built={self.is_built()})"

    # -- state ---------------------------------------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def _read_manifest_file(self) -> tuple[dict[str, Any], bytes] | None:
        try:
            raw = self.manifest_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return json.loads(raw), raw
        except (ValueError, UnicodeDecodeError):
            raise CollectionError(
                f"{self.manifest_path} is not valid JSON; rebuild with "
                f"`sharpbench collection build {self.spec.name} --force` or delete {self.root}") from None

    def is_built(self) -> bool:
        """True when manifest.json exists and was built from this very card (same sha256)."""
        try:
            found = self._read_manifest_file()
        except CollectionError:
            return False
        return found is not None and found[0].get("card_sha256") == self.spec.card_sha256

    def _stale_error(self, what: str) -> CollectionError:
        return CollectionError(
            f"{what} in {self.root} was built from a different version of the card {self.spec.path}; rebuild "
            f"with `sharpbench collection build {self.spec.name} --force` or delete {self.root}")

    @property
    def manifest(self) -> dict[str, Any]:
        """The parsed manifest.json; builds the collection first if it is not built (first use)."""
        if self._manifest is None:
            if not self.is_built():
                self.build()
            found = self._read_manifest_file()
            if found is None:
                raise CollectionError(f"collection {self.spec.name} has no {MANIFEST} in {self.root}; build it with "
                                      f"`sharpbench collection build {self.spec.name}`")
            manifest, raw = found
            if manifest.get("card_sha256") != self.spec.card_sha256:
                raise self._stale_error(MANIFEST)
            self._manifest, self._manifest_bytes = manifest, raw
        return self._manifest

    @property
    def models(self) -> list[ModelRecord]:
        """The kept (converged) models, in grid order, from manifest.json (a new list each call)."""
        manifest = self.manifest
        if self._models is not None:
            return list(self._models)
        try:
            self._models = [ModelRecord.from_json(entry) for entry in manifest["models"]]
            return list(self._models)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise CollectionError(f"{self.manifest_path} is malformed ({error!r}); rebuild with "
                                  f"`sharpbench collection build {self.spec.name} --force`") from None

    @property
    def excluded(self) -> list[dict[str, Any]]:
        """Models the convergence filter dropped: {id, hparams, train_error, train_loss}."""
        return [dict(entry) for entry in self.manifest.get("excluded", [])]

    @property
    def shifts(self) -> list[str]:
        """OOD shift names, in card order."""
        return [shift.name for shift in self.spec.shifts]

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def loss_fn(self) -> LossFn:
        """The loss of this collection's task (cross-entropy, or MSE for regression): the MeasureContext's loss_fn."""
        return self.spec.loss_fn

    @property
    def manifest_sha256(self) -> str:
        self.manifest  # noqa: B018 - loads (and if needed builds) it
        assert self._manifest_bytes is not None
        return hashlib.sha256(self._manifest_bytes).hexdigest()

    # -- data ----------------------------------------------------------------------------------------

    def data(self) -> CollectionData | StreamedData:
        """The dataset splits and the OOD test inputs (computed once per Collection object): tensors in memory,
        or, for a streamed dataset (ImageNet, MNLI), datasets read when used."""
        if self._data is None:
            kind = DATASETS[self.spec.dataset["name"]]
            if kind.stream is not None:
                self._data = kind.stream(self.spec.dataset, [(s.name, s.kind, s.params) for s in self.spec.shifts])
                return self._data
            x_train, y_train, x_test, y_test = load_dataset(self.spec.dataset)
            image_shape = DATASETS[self.spec.dataset["name"]].image_shape
            ood = {s.name: apply_shift(s.kind, x_test, s.params, image_shape) for s in self.spec.shifts}
            self._data = CollectionData(x_train, y_train, x_test, y_test, ood)
        return self._data

    def _num_train(self) -> int:
        if self._data is None and self.is_built():
            with contextlib.suppress(KeyError, TypeError, CollectionError):
                return int(self.manifest["dataset"]["num_train"])
        return _sizes(self.data())[0]

    def protocol(self, n: int | None = None, m: int | None = None) -> dict[str, Any]:
        """The sharpness-data protocol as a JSON-able dict (part of every cache key)."""
        n = self.spec.sharpness_data["n"] if n is None else int(n)
        m = self.spec.sharpness_data["m"] if m is None else int(m)
        if n <= 0 or m <= 0:
            raise CollectionError(f"the sharpness-data protocol needs positive n and m (got n={n}, m={m})")
        dataset_params = {k: v for k, v in self.spec.dataset.items() if k != "name"}
        return {
            "collection": self.spec.name,
            "dataset": self.spec.dataset["name"],
            "dataset_params": dataset_params,
            "split_seed": dataset_params.get("split_seed"),
            "n": n,
            "m": m,
            "subset_seed": self.spec.sharpness_data["seed"],
            "n_used": min(n, self._num_train()),
        }

    def sharpness_batches(self, n: int | None = None, m: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A fixed subset of n training points (all if fewer), the same for every model and call, in a fixed
        seeded order, no augmentation, split into consecutive batches of m (the last may be smaller)."""
        protocol = self.protocol(n, m)
        data = self.data()
        train = data.train if isinstance(data, StreamedData) else TensorDataset(data.x_train, data.y_train)
        x, y = stack(seeded_subset(train, protocol["n_used"], protocol["subset_seed"]))
        m = protocol["m"]
        return [(x[i:i + m].clone(), y[i:i + m].clone()) for i in range(0, x.shape[0], m)]

    # -- loading -------------------------------------------------------------------------------------

    @property
    def _fix(self) -> str:
        return (f"rebuild with `sharpbench collection build {self.spec.name} --force` "
                f"or delete {self.root} (it is rebuilt on next use)")

    def _verified_bytes(self, relative: str, expected_sha256: str, what: str) -> bytes:
        """The bytes of a file the manifest names, checked against its sha256 (``what``: how errors name it)."""
        path = self.root / relative
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise CollectionError(f"{what} {path} cannot be read ({error.strerror}); {self._fix}") from None
        found = hashlib.sha256(raw).hexdigest()
        if found != expected_sha256:
            raise CollectionError(f"{what} {path} fails its integrity check (sha256 {found}, manifest says "
                                  f"{expected_sha256}); {self._fix}")
        return raw

    def _verified_tensors(self, relative: str, expected_sha256: str) -> dict[str, torch.Tensor]:
        from safetensors import SafetensorError
        from safetensors.torch import load as load_safetensors

        raw = self._verified_bytes(relative, expected_sha256, "checkpoint")
        try:
            return load_safetensors(raw)
        except (SafetensorError, ValueError) as error:
            raise CollectionError(f"checkpoint {self.root / relative} is not a valid safetensors file ({error}); "
                                  f"{self._fix}") from None

    def load_model(self, record: ModelRecord) -> nn.Module:
        """The model of ``record``: sha256 verified, weights loaded strictly, eval mode, CPU, float32."""
        state = self._verified_tensors(record.file, record.sha256)
        # the bare architecture: the checkpoint's weights replace any pretrained ones, so nothing is downloaded
        bare = _bare(self.spec.architecture)
        model = build_model({**self.spec.architecture, **bare}, {k: v for k, v in record.hparams.items()
                                                                if k not in bare})
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise CollectionError(f"checkpoint {self.root / record.file} does not fit the card's architecture "
                                  f"({error}); rebuild with `sharpbench collection build {self.spec.name} --force`"
                                  ) from None
        return model.to(device="cpu", dtype=torch.float32).eval()

    def load_initial_state(self, record: ModelRecord) -> dict[str, torch.Tensor] | None:
        """The weights of ``record`` before training (state-dict names), sha256 verified; None when they are not
        known (a pretrained checkpoint whose card gives no ``init``)."""
        if not record.init_file:
            return None
        return self._verified_tensors(record.init_file, record.init_sha256)

    # -- per-example outcomes ------------------------------------------------------------------------

    @property
    def has_outcomes(self) -> bool:
        """True when every kept model has its per-example outcomes (False for a collection built before them:
        `sharpbench collection build NAME` adds them)."""
        return "set_sizes" in self.manifest and all(record.outcomes_file for record in self.models)

    def _missing_outcomes(self) -> CollectionError:
        return CollectionError(f"collection {self.spec.name} has no per-example outcomes (built before they were "
                               f"kept, or imported); add them (no training) with "
                               f"`sharpbench collection build {self.spec.name}`")

    def set_sizes(self) -> dict[str, int]:
        """{evaluation set: number of examples}: ``train`` (the train-evaluation set), ``test``, ``ood/<shift>``."""
        if not self.has_outcomes:
            raise self._missing_outcomes()
        return {str(name): int(size) for name, size in self.manifest["set_sizes"].items()}

    def load_outcomes(self, record: ModelRecord) -> dict[str, Outcomes]:
        """The per-example outcomes of ``record`` by set, sha256 and shapes verified."""
        if not record.outcomes_file:
            raise self._missing_outcomes()
        raw = self._verified_bytes(record.outcomes_file, record.outcomes_sha256, "outcome file")
        return decode(raw, self.set_sizes(), str(self.root / record.outcomes_file), self._fix)

    def outcome_sets(self) -> dict[str, dict[str, np.ndarray]]:
        """{set: {"error": (models, examples), "loss": (models, examples)}}, float32, rows in the order of
        :attr:`models`, every file verified against its sha256 and the manifest's set sizes."""
        per_model = [self.load_outcomes(record) for record in self.models]
        return {name: {kind: np.asarray([getattr(outcomes[name], kind).numpy() for outcomes in per_model],
                                        dtype=np.float32).reshape(len(per_model), size)
                       for kind in ("error", "loss")}
                for name, size in self.set_sizes().items()}

    # -- building ------------------------------------------------------------------------------------

    def ensure_built(self, progress: bool = True) -> None:
        if not self.is_built():
            self.build(progress=progress)

    def _check_buildable(self) -> None:
        if self.spec.imported:
            raise CollectionError(
                f"collection {self.spec.name} is imported (its card {self.spec.path} says `imported: true`): it "
                f"cannot be trained here; import it again with `sharpbench collection import DIR`")

    def _record_path(self, model_id: str) -> Path:
        return self.root / RECORDS / f"{model_id}.json"

    def _finished_record(self, point: ModelPoint) -> dict[str, Any] | None:
        """The record of a model finished by an earlier (possibly interrupted) build, if it is intact."""
        path = self._record_path(point.id)
        try:
            record = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError):
            return None
        if record.get("card_sha256") != self.spec.card_sha256:
            raise self._stale_error(f"record {path.name}")
        if record.get("hparams") != point.hparams:
            return None
        if record.get("converged"):
            for file_key, sha_key in (("file", "sha256"), ("init_file", "init_sha256"),
                                      ("outcomes_file", "outcomes_sha256")):
                if file_key != "file" and not record.get(file_key):
                    continue      # initial weights not known; outcomes not kept by an older version
                file_path = self.root / str(record.get(file_key))
                if not file_path.is_file() or file_sha256(file_path) != record.get(sha_key):
                    return None
        return record

    def build(self, progress: bool = True, force: bool = False, workers: int = 1,
              device: torch.device | str = "cpu") -> None:
        """Train every model of the grid that no earlier build finished, then write manifest.json.

        Does nothing when the collection is already built from this card (unless ``force``, which
        deletes the folder first), except add the per-example outcomes of a collection built (or pulled, or
        imported) before they were kept: each kept model is scored from its verified checkpoint, never
        trained. Each finished model's files and record are written atomically at once, so an interrupted
        build resumes without retraining (or rescoring) anything it finished. ``workers`` > 1 trains that
        many models at a time in separate processes (one thread each: the same bits as one worker).
        ``device`` trains and scores there (e.g. cuda for the full-scale cards); files are saved from the CPU."""
        device = torch.device(device)
        if workers < 1:
            raise CollectionError(f"--workers must be at least 1 (got {workers})")
        if self.spec.imported and (force or not self.is_built()):
            self._check_buildable()
        with build_lock(self.root):
            if force:
                for child in (CHECKPOINTS, RECORDS, OUTCOMES):
                    shutil.rmtree(self.root / child, ignore_errors=True)
                self.manifest_path.unlink(missing_ok=True)
            elif self.is_built():
                self._manifest = self._manifest_bytes = self._models = None   # another process may have built it
                self._add_outcomes(progress, workers, device)
                return
            elif self._read_manifest_file() is not None:   # (an unreadable one raises, naming the fix)
                raise self._stale_error(MANIFEST)
            self._manifest = self._manifest_bytes = self._models = None
            for leftover in self.root.glob("**/.*.tmp-*"):     # half-written files of an interrupted build
                leftover.unlink(missing_ok=True)
            self._train_missing(progress, workers, device)
            self._write_manifest()
            self._add_outcomes(progress, workers, device)     # records an older version finished without them

    def _train_missing(self, progress: bool, workers: int, device: torch.device) -> None:
        from tqdm.auto import tqdm

        points = self.spec.model_points()
        finished = {p.id for p in points if self._finished_record(p) is not None}
        todo = [p for p in points if p.id not in finished]
        if not todo:
            return
        bar = tqdm(total=len(points), initial=len(finished), desc=f"building {self.spec.name}", unit="model",
                   disable=not progress, dynamic_ncols=True)
        try:
            for record in self._train_points(todo, workers, device, progress):
                bar.set_postfix_str(f"last train error {record['train_error']}", refresh=False)
                bar.update(1)
        finally:
            bar.close()

    def _train_points(self, todo: list[ModelPoint], workers: int, device: torch.device,
                      progress: bool = False) -> Iterator[dict[str, Any]]:
        """Train the points in this process, or in ``workers`` spawned processes; yields each finished record.
        A card of checkpoints fetches them instead, in this process (``workers`` then read its data)."""
        if self.spec.checkpoints:
            data = self.data()
            for point in todo:
                yield self._fetch_one(point, data, device, workers, progress)
            return
        if workers == 1 or len(todo) == 1:
            data = self.data().to(device)
            with _deterministic(device):
                for point in todo:
                    yield self._train_one(point, data)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn, not fork: a forked child of a process that already ran torch ops can deadlock in OpenMP
        pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_start, initargs=(self.spec, self.root, device))
        try:
            futures = [pool.submit(_worker_train, point) for point in todo]
            for future in as_completed(futures):
                yield future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _train_labels(self, y_train: torch.Tensor, hparams: dict[str, Any], seed: int) -> torch.Tensor:
        """The labels a model was trained on (and whose train error it has): with the recipe's label noise."""
        if not self.spec.trained:
            return y_train
        fraction = recipe_config(self.spec.training, hparams)["label_noise"]
        return noisy_labels(y_train.cpu(), fraction, self.spec.num_classes, seed).to(y_train.device)

    def _memory_sets(self, data: CollectionData, y_train: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The evaluation sets of in-memory data by name, as (inputs, labels); OOD inputs share the test labels."""
        return {"train": (data.x_train, y_train), "test": (data.x_test, data.y_test),
                **{f"ood/{name}": (x, data.y_test) for name, x in data.ood_inputs.items()}}

    def _streamed_sets(self, data: StreamedData) -> dict[str, EvalSet]:
        """The evaluation sets of streamed data by name: the seeded train-evaluation subset, test, each OOD set."""
        train = seeded_subset(data.train, self.spec.dataset["train_eval_size"], self.spec.sharpness_data["seed"])
        return {"train": EvalSet(train), "test": data.test, **{f"ood/{k}": v for k, v in data.ood.items()}}

    def _score(self, model: nn.Module, data: CollectionData | StreamedData, device: torch.device,
               hparams: dict[str, Any], seed: int, workers: int = 0, progress: bool = False) -> dict[str, Outcomes]:
        """A kept model's per-example outcomes on every evaluation set. Streamed scoring shows a bar of examples
        (``workers`` processes read the data)."""
        from tqdm.auto import tqdm

        if isinstance(data, StreamedData):
            sets = self._streamed_sets(data)
            total = sum(len(evalset.dataset) for evalset in sets.values())  # type: ignore[arg-type]
            with tqdm(total=total, desc="scoring", unit="example", leave=False, disable=not progress,
                      dynamic_ncols=True) as bar:
                return {name: stream_outcomes(model, evalset, device, workers=workers, progress=bar.update)
                        for name, evalset in sets.items()}
        data = data.to(device)
        sets = self._memory_sets(data, self._train_labels(data.y_train, hparams, seed))
        return {name: evaluate_outcomes(model, x, y, self.spec.loss) for name, (x, y) in sets.items()}

    def _train_one(self, point: ModelPoint, data: CollectionData) -> dict[str, Any]:
        started = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(point.seed)
            model = build_model(self.spec.architecture, point.hparams)    # on the CPU: the same init everywhere
        initial = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        device = data.x_train.device
        model.to(device)
        loss = self.spec.loss
        # with label noise, the model is trained on (and its train error measured against) the noisy labels
        sets = self._memory_sets(data, self._train_labels(data.y_train, point.hparams, point.seed))
        epochs = train_model(model, *sets["train"], self.spec.training, point.hparams, point.seed, loss)
        train = evaluate_outcomes(model, *sets["train"], loss)
        train_error, train_loss = train.means()
        converged = math.isfinite(train_loss) and train_error <= self.spec.max_train_error
        record: dict[str, Any] = {
            "id": point.id, "index": point.index, "hparams": point.hparams, "seed": point.seed,
            "card_sha256": self.spec.card_sha256, "converged": converged,
            "train_error": finite_or_none(train_error), "train_loss": finite_or_none(train_loss), "epochs": epochs,
            "device": str(device),
        }
        if converged:       # the other sets are scored only for a kept model
            outcomes = {"train": train, **{name: evaluate_outcomes(model, x, y, loss)
                                           for name, (x, y) in sets.items() if name != "train"}}
            record.update(self._save_checkpoints(point.id, model.state_dict(), initial))
            record.update(self._save_outcomes(point.id, record["sha256"], outcomes))
        return self._finish_record(record, started)

    def _fetch_one(self, point: ModelPoint, data: CollectionData | StreamedData, device: torch.device,
                   workers: int, progress: bool = False) -> dict[str, Any]:
        """Fetch one pretrained checkpoint (and its initial weights, when the card names them), score it on the
        train-evaluation, test and OOD sets, save it, its outcomes and its record."""
        started = time.perf_counter()
        checkpoint = self.spec.checkpoints[point.index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(point.seed)    # a head that fine-tuning would add starts the same everywhere
            model = self._fetch(point, point.hparams)
            initial = None if checkpoint.init is None else self._fetch(point, {**point.hparams, **checkpoint.init})
        model.to(device).eval()
        outcomes = self._score(model, data, device, point.hparams, point.seed, workers, progress)
        record: dict[str, Any] = {
            "id": point.id, "index": point.index, "hparams": point.hparams, "seed": point.seed,
            "card_sha256": self.spec.card_sha256, "converged": True, "epochs": None, "device": str(device),
        }
        record.update(self._save_checkpoints(point.id, model.state_dict(),
                                             None if initial is None else initial.state_dict()))
        record.update(self._save_outcomes(point.id, record["sha256"], outcomes))
        return self._finish_record(record, started)

    def _fetch(self, point: ModelPoint, hparams: dict[str, Any]) -> nn.Module:
        """The architecture with pretrained weights named by ``hparams`` (the hub, its cache, or a local file)."""
        try:
            return build_model(self.spec.architecture, hparams)
        except (OSError, ValueError, RuntimeError) as error:
            raise CollectionError(
                f"cannot fetch the weights of checkpoint {point.id!r} of {self.spec.name} ({hparams}): "
                f"{type(error).__name__}: {error}. Go online (unset HF_HUB_OFFLINE) so the hub can be reached, or "
                f"put the weights in the Hugging Face cache ($HF_HOME) or in a local file the card names"
            ) from None

    def _metadata(self, model_id: str, **more: str) -> dict[str, str]:
        return {"collection": self.spec.name, "model": model_id, **more}

    def _save_checkpoints(self, model_id: str, final: dict[str, torch.Tensor],
                          initial: dict[str, torch.Tensor] | None) -> dict[str, Any]:
        """Write a kept model's weights (and initial weights, when known); the record fields that name them."""
        from safetensors.torch import save as save_safetensors

        # one metadata key: safetensors writes several in a random order, and the sha256 must be stable
        metadata = {"sharpbench": json.dumps(self._metadata(model_id), sort_keys=True)}
        fields: dict[str, Any] = {"init_file": "", "init_sha256": ""}
        for key, suffix, state in (("file", "", final), ("init_file", ".init", initial)):
            if state is None:
                continue
            relative = f"{CHECKPOINTS}/{model_id}{suffix}.safetensors"
            blob = save_safetensors({k: v.detach().cpu().contiguous() for k, v in state.items()}, metadata)
            atomic_write(self.root / relative, blob)
            fields[key], fields["sha256" if key == "file" else "init_sha256"] = relative, hashlib.sha256(blob).hexdigest()
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

    def _finish_record(self, record: dict[str, Any], started: float) -> dict[str, Any]:
        """Stamp the record's time and write it, atomically and last: the model counts as finished from here."""
        record["seconds"] = time.perf_counter() - started
        record = finite_or_none(record)
        atomic_write(self._record_path(record["id"]), json.dumps(record, indent=1, allow_nan=False).encode())
        return record

    def _add_outcomes(self, progress: bool, workers: int, device: torch.device) -> None:
        """Score every kept model that has no outcomes from its verified checkpoint (no training), write its
        outcome file, and update its record and the manifest after each model, so an interrupted run keeps the
        models it finished. The recomputed errors must equal the manifest's (else the data or the code changed)."""
        from tqdm.auto import tqdm

        manifest = self.manifest
        entries = manifest.get("models", [])
        todo = [entry for entry in entries if not entry.get("outcomes_file")]
        if not todo and "set_sizes" in manifest:
            return
        data = self.data()
        manifest["set_sizes"] = self._set_sizes(data)
        bar = tqdm(total=len(entries), initial=len(entries) - len(todo), desc=f"outcomes of {self.spec.name}",
                   unit="model", disable=not progress, dynamic_ncols=True)
        try:
            with _deterministic(device):
                for entry in todo:
                    self._add_outcomes_of(entry, data, device, workers, progress)
                    self._rewrite_manifest(manifest)
                    bar.update(1)
        finally:
            bar.close()
        self._rewrite_manifest(manifest)

    def _add_outcomes_of(self, entry: dict[str, Any], data: CollectionData | StreamedData, device: torch.device,
                         workers: int, progress: bool) -> None:
        """Score one manifest entry's checkpoint, check its aggregates, write its outcomes; updates ``entry``."""
        record = ModelRecord.from_json(entry)
        model = self.load_model(record).to(device)
        outcomes = self._score(model, data, device, record.hparams, record.seed, workers, progress)
        if self.spec.imported:
            # the import table's numbers were measured elsewhere (their data, their evaluation): kept as reported,
            # while the aggregates become the means of the outcomes measured here, as for every other collection
            entry.setdefault("reported", {key: entry.get(key) for key in AGGREGATE_KEYS})
        else:
            differ = mismatches(entry, outcomes, exact_error=LOSSES[self.spec.loss][2])
            if differ:
                raise CollectionError(
                    f"model {record.id} of {self.spec.name} scores differently now than when it was built "
                    f"({'; '.join(differ)}): the data or the code changed since; rebuild with "
                    f"`sharpbench collection build {self.spec.name} --force`")
        fields = self._save_outcomes(record.id, record.sha256, outcomes)
        entry.update({key: fields[key] for key in MODEL_KEYS if key in fields})
        with contextlib.suppress(FileNotFoundError, ValueError, UnicodeDecodeError):   # pulled: no records
            path = self._record_path(record.id)
            stored = json.loads(path.read_bytes())
            stored.update(fields)
            atomic_write(path, json.dumps(stored, indent=1, allow_nan=False).encode())

    def _rewrite_manifest(self, manifest: dict[str, Any]) -> None:
        """Write ``manifest`` (format :data:`MANIFEST_FORMAT`) atomically and forget the cached copy."""
        manifest["format"] = MANIFEST_FORMAT
        written = {**manifest, "models": [{key: entry[key] for key in MODEL_KEYS if key in entry}
                                          for entry in manifest["models"]]}
        atomic_write(self.manifest_path, json.dumps(finite_or_none(written), indent=1, allow_nan=False).encode())
        self._manifest = self._manifest_bytes = self._models = None

    def _set_sizes(self, data: CollectionData | StreamedData) -> dict[str, int]:
        """The number of examples of each evaluation set, by name."""
        if isinstance(data, StreamedData):
            sets = self._streamed_sets(data)
            return {name: len(evalset.dataset) for name, evalset in sets.items()}  # type: ignore[arg-type]
        return {name: int(x.shape[0]) for name, (x, _) in self._memory_sets(data, data.y_train).items()}

    def _write_manifest(self) -> None:
        points = self.spec.model_points()
        records = []
        for point in points:
            record = self._finished_record(point)
            if record is None:
                raise CollectionError(f"model {point.id} of {self.spec.name} has no intact record after the build; "
                                      f"run `sharpbench collection build {self.spec.name}` again")
            records.append(record)
        data = self.data()
        num_train, num_test = _sizes(data)
        manifest = {
            "format": MANIFEST_FORMAT,
            "collection": self.spec.name,
            "description": self.spec.description,
            "card": self.spec.path.name,
            "card_sha256": self.spec.card_sha256,
            "sharpbench_version": __version__,
            "torch_version": torch.__version__,
            "dataset": {**self.spec.dataset, "num_train": num_train, "num_test": num_test,
                        "num_classes": self.spec.num_classes},
            "shifts": [{"name": s.name, "kind": s.kind, "params": s.params} for s in self.spec.shifts],
            "set_sizes": self._set_sizes(data),
            "architecture": self.spec.architecture,
            "training": self.spec.training,
            "grid": self.spec.grid,
            "max_train_error": self.spec.max_train_error,
            "protocol": self.protocol(),
            "loss": self.spec.loss,
            "build_time_seconds": round(sum(float(r.get("seconds", 0.0)) for r in records), 3),
            "models": [{key: r[key] for key in MODEL_KEYS if key in r} for r in records if r["converged"]],
            "excluded": [{"id": r["id"], "hparams": r["hparams"], "train_error": r["train_error"],
                          "train_loss": r["train_loss"], "epochs": r.get("epochs")}
                         for r in records if not r["converged"]],
        }
        atomic_write(self.manifest_path, json.dumps(manifest, indent=1, allow_nan=False).encode())
        self._manifest = self._manifest_bytes = self._models = None


def _sizes(data: CollectionData | StreamedData) -> tuple[int, int]:
    """(training examples, test examples) of a collection's data."""
    if isinstance(data, StreamedData):
        return len(data.train), len(data.test.dataset)  # type: ignore[arg-type]
    return int(data.x_train.shape[0]), int(data.x_test.shape[0])


def _bare(arch: dict[str, Any]) -> dict[str, Any]:
    """The architecture fields that fetch pretrained weights, at their defaults (nothing fetched)."""
    params = ARCHITECTURES[arch["kind"]].params
    return {"pretrained": params["pretrained"].default} if "pretrained" in params else {}


_WORKER: tuple[Collection, CollectionData, torch.device] | None = None


def _worker_start(spec: CollectionSpec, root: Path, device: torch.device) -> None:
    """Set up one build worker process: its own Collection, the data loaded once onto the device."""
    global _WORKER
    collection = Collection(spec, root)
    _WORKER = (collection, collection.data().to(device), device)


def _worker_train(point: ModelPoint) -> dict[str, Any]:
    assert _WORKER is not None, "_worker_start did not run"
    collection, data, device = _WORKER
    with _deterministic(device):
        return collection._train_one(point, data)


def open_collection(spec: CollectionSpec, home: Path | None = None) -> Collection:
    """The collection of ``spec`` under ``home/collections/NAME`` (home defaults to sharpbench_home())."""
    return Collection(spec, Path(home if home is not None else sharpbench_home()) / "collections" / spec.name)
