"""A built collection, read-only: its manifest, its models verified on load, its data, its sharpness-data protocol
and its per-example outcomes. Building is :mod:`sharpbench.collection.builder`; the folder's layout is
:mod:`sharpbench.collection.files`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sharpbench.collection.files import MANIFEST
from sharpbench.collection.manifest import read_manifest
from sharpbench.collection.records import ModelRecord
from sharpbench.collection.spec import CollectionSpec
from sharpbench.data.outcomes import Outcomes, decode
from sharpbench.data.locate import DataPaths
from sharpbench.data.registry import SHIFTS, load_splits
from sharpbench.data.sets import DatasetSplits, prefix, seeded_subset, stack
from sharpbench.errors import CollectionError, Hint
from sharpbench.losses import LossFn
from sharpbench.models.registry import ARCHITECTURES, build_model
from sharpbench.paths import home_path


class Collection:
    """A collection on disk, read through its manifest; every file it names is verified against its sha256."""

    def __init__(self, spec: CollectionSpec, root: Path, paths: DataPaths | None = None) -> None:
        self.spec = spec
        self.root = Path(root)
        self.paths = paths or DataPaths.from_env()    # where its dataset (and local weights) are found
        self._manifest: tuple[dict[str, Any], bytes] | None = None
        self._models: list[ModelRecord] | None = None
        self._data: DatasetSplits | None = None

    def __repr__(self) -> str:
        return f"Collection({self.spec.name!r}, root={str(self.root)!r}, built={self.is_built()})"

    # -- the manifest ----------------------------------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def fix(self) -> tuple[Hint, ...]:
        """How to repair a damaged collection: build it again from scratch."""
        return (Hint("rebuild", collection=self.spec.name),)

    def read_manifest(self) -> tuple[dict[str, Any], bytes] | None:
        """(manifest, its bytes) as on disk now, None when there is none; a damaged one raises, naming the fix."""
        return read_manifest(self.manifest_path, self.fix)

    def is_built(self) -> bool:
        """True when manifest.json exists and was built from this very card (same sha256)."""
        try:
            found = self.read_manifest()
        except CollectionError:
            return False
        return found is not None and found[0].get("card_sha256") == self.spec.card_sha256

    def stale_error(self, what: str) -> CollectionError:
        """The error for a file built from another version of the card."""
        return CollectionError(f"{what} in {self.root} was built from a different version of the card "
                               f"{self.spec.path}.", hints=self.fix)

    def forget(self) -> None:
        """Drop the cached manifest and models (after the builder rewrote them)."""
        self._manifest = self._models = None

    def _loaded(self) -> tuple[dict[str, Any], bytes]:
        if self._manifest is None:
            found = self.read_manifest()
            if found is None:
                raise CollectionError(f"collection {self.spec.name} is not built (no {MANIFEST} in {self.root}).",
                                      hints=[Hint("build", collection=self.spec.name)])
            if found[0].get("card_sha256") != self.spec.card_sha256:
                raise self.stale_error(MANIFEST)
            self._manifest = found
        return self._manifest

    @property
    def manifest(self) -> dict[str, Any]:
        """The parsed manifest.json of a built collection (schema-checked)."""
        return self._loaded()[0]

    @property
    def manifest_sha256(self) -> str:
        return hashlib.sha256(self._loaded()[1]).hexdigest()

    @property
    def models(self) -> list[ModelRecord]:
        """The kept (converged) models, in grid order, from manifest.json (a new list each call)."""
        if self._models is None:
            self._models = [ModelRecord.from_json(entry) for entry in self.manifest["models"]]
        return list(self._models)

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

    # -- data ------------------------------------------------------------------------------------------

    def data(self) -> DatasetSplits:
        """The training, test and OOD sets (loaded once per Collection object): tensors in memory, or, for a
        streamed dataset (ImageNet, MNLI), datasets read when used."""
        if self._data is None:
            self._data = load_splits(self.spec.dataset, [(s.name, s.kind, s.params) for s in self.spec.shifts],
                                     self.paths)
        return self._data

    def _num_train(self) -> int:
        """The number of training examples every model was trained on (the first ``train_subset`` of them where
        the card trains on part of the training set)."""
        total = None
        if self._data is None and self.is_built():
            total = self.manifest.get("dataset", {}).get("num_train")
        if not isinstance(total, int):
            total = len(self.data().train)  # type: ignore[arg-type]
        shared = self.spec.shared_train_subset
        return min(total, shared) if shared else total

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
        seeded order, no augmentation, split into consecutive batches of m (the last may be smaller). Where the card
        trains models on the first ``train_subset`` examples, the points come from the smallest such prefix, so
        that every model was trained on them."""
        protocol = self.protocol(n, m)
        train = self.data().train
        if self.spec.shared_train_subset:
            train = prefix(train, self.spec.shared_train_subset)  # type: ignore[arg-type]
        x, y = stack(seeded_subset(train, protocol["n_used"], protocol["subset_seed"]))
        m = protocol["m"]
        return [(x[i:i + m].clone(), y[i:i + m].clone()) for i in range(0, x.shape[0], m)]

    def test_input_batches(self, n: int | None = None, m: int | None = None) -> list[torch.Tensor]:
        """Unlabeled inputs of the test split for a measure that declares it reads them: a fixed subset of n test
        points (all if fewer), drawn and batched as the sharpness batches are (same n, m and seed)."""
        protocol = self.protocol(n, m)
        test = self.data().test.dataset
        x, _ = stack(seeded_subset(test, min(protocol["n"], len(test)), protocol["subset_seed"]))
        return [x[i:i + protocol["m"]].clone() for i in range(0, x.shape[0], protocol["m"])]

    def siblings(self, record: ModelRecord) -> list[ModelRecord]:
        """The other models with the same hyperparameters as ``record`` (its seed and the fields that name a
        checkpoint's weights aside): the same configuration trained from other seeds."""
        def configuration(other: ModelRecord) -> dict[str, Any]:
            return {k: v for k, v in other.hparams.items() if k != "seed" and k not in self.spec.weight_fields}

        own = configuration(record)
        return [other for other in self.models if other.id != record.id and configuration(other) == own]

    # -- verified loading ------------------------------------------------------------------------------

    def verified_bytes(self, relative: str, expected_sha256: str, what: str) -> bytes:
        """The bytes of a file the manifest names, checked against its sha256 (``what``: how errors name it)."""
        path = self.root / relative
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise CollectionError(f"{what} {path} cannot be read ({error.strerror}).", hints=self.fix) from None
        found = hashlib.sha256(raw).hexdigest()
        if found != expected_sha256:
            raise CollectionError(f"{what} {path} fails its integrity check (sha256 {found}, manifest says "
                                  f"{expected_sha256}).", hints=self.fix)
        return raw

    def _verified_tensors(self, relative: str, expected_sha256: str) -> dict[str, torch.Tensor]:
        from safetensors import SafetensorError
        from safetensors.torch import load as load_safetensors

        raw = self.verified_bytes(relative, expected_sha256, "checkpoint")
        try:
            return load_safetensors(raw)
        except (SafetensorError, ValueError) as error:
            raise CollectionError(f"checkpoint {self.root / relative} is not a valid safetensors file ({error}).",
                                  hints=self.fix) from None

    def load_model(self, record: ModelRecord) -> nn.Module:
        """The model of ``record``: sha256 verified, weights loaded strictly, eval mode, CPU, float32."""
        state = self._verified_tensors(record.file, record.sha256)
        # the bare architecture: the checkpoint's weights replace any pretrained ones, so nothing is downloaded
        bare = bare_architecture(self.spec.architecture)
        model = build_model({**self.spec.architecture, **bare},
                            {k: v for k, v in record.hparams.items() if k not in bare}, self.paths)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise CollectionError(f"checkpoint {self.root / record.file} does not fit the card's architecture "
                                  f"({error}).", hints=self.fix) from None
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
                               f"kept, or imported); building it adds them, without training.",
                               hints=[Hint("build", collection=self.spec.name)])

    def set_sizes(self) -> dict[str, int]:
        """{evaluation set: number of examples}: ``train`` (the train-evaluation set), ``test``, ``ood/<shift>``."""
        if not self.has_outcomes:
            raise self._missing_outcomes()
        return {str(name): int(size) for name, size in self.manifest["set_sizes"].items()}

    def example_samples(self) -> dict[str, str]:
        """{evaluation set: the examples it is drawn on}: an OOD set made by a shift of the test split is drawn on
        the test split's examples (``test``), in the same order; an OOD set of a dataset's own, and the train set, on
        its own. Scoring resamples sets of one sample with the same indices."""
        shifted = {f"ood/{shift.name}" for shift in self.spec.shifts if shift.kind in SHIFTS}
        return {name: "test" if name in shifted else name for name in self.set_sizes()}

    def load_outcomes(self, record: ModelRecord) -> dict[str, Outcomes]:
        """The per-example outcomes of ``record`` by set, sha256 and shapes verified."""
        if not record.outcomes_file:
            raise self._missing_outcomes()
        raw = self.verified_bytes(record.outcomes_file, record.outcomes_sha256, "outcome file")
        return decode(raw, self.set_sizes(), str(self.root / record.outcomes_file), self.fix)

    def outcome_sets(self) -> dict[str, dict[str, np.ndarray]]:
        """{set: {"error": (models, examples), "loss": (models, examples)}}, float32, rows in the order of
        :attr:`models`, every file verified against its sha256 and the manifest's set sizes."""
        per_model = [self.load_outcomes(record) for record in self.models]
        return {name: {kind: np.asarray([getattr(outcomes[name], kind).numpy() for outcomes in per_model],
                                        dtype=np.float32).reshape(len(per_model), size)
                       for kind in ("error", "loss")}
                for name, size in self.set_sizes().items()}


def bare_architecture(arch: dict[str, Any]) -> dict[str, Any]:
    """The architecture fields that fetch pretrained weights, at their defaults (nothing fetched)."""
    params = ARCHITECTURES[arch["kind"]].params
    return {name: params[name].default for name in ("pretrained", "pretrained_file") if name in params}


def open_collection(spec: CollectionSpec, home: Path | None = None, paths: DataPaths | None = None) -> Collection:
    """The collection of ``spec`` under ``home/collections/NAME`` (home defaults to $SHARPBENCH_HOME, neither
    created nor required to be writable: opening only reads), its data found in ``paths`` (default:
    $SHARPBENCH_DATA)."""
    return Collection(spec, Path(home if home is not None else home_path()) / "collections" / spec.name, paths)
