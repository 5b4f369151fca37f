"""Running a measure over a collection: fixed sharpness batches, the integrity guard (evaluation.guard), and the
cache (evaluation.store)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from sharpbench.collection.collection import Collection, ModelRecord
from sharpbench.errors import Hint, Interrupted, SharpbenchError
from sharpbench.evaluation.guard import batches_snapshot, run_guarded_many
from sharpbench.kernels.flat import architecture_key
from sharpbench.cards.measure_card import MeasureSpec
from sharpbench.measure import Batch, MeasureContext
from sharpbench.scoring.metrics import tau_vs_hparams
from sharpbench.scoring.resampling import Bootstrap
from sharpbench.scoring.scores import OutcomeSet, Scores, numeric_hparams, score_targets, standard_targets
from sharpbench.evaluation.store import ResultStore, StoredValue, measure_key
from sharpbench.version import __version__


def default_device() -> torch.device:
    """The first GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str | None) -> torch.device:
    """The torch device a user named ('cpu', 'cuda', 'cuda:1', ...), or the default when None; a name torch does
    not know, or a device this machine lacks, is an error saying which devices there are."""
    if name is None:
        return default_device()
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    here = f"this machine has cpu{f' and cuda:0 to cuda:{gpus - 1}' if gpus else ' only (torch sees no GPU)'}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SharpbenchError(f"device '{name}' is not a torch device name (such as cpu, cuda or cuda:1); {here}.",
                              hints=[Hint("device")]) from None
    if device.type == "cuda" and (device.index or 0) >= gpus:
        raise SharpbenchError(f"device '{name}' is not available: {here}.", hints=[Hint("device")])
    if device.type not in ("cpu", "cuda"):
        backend = getattr(torch, device.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise SharpbenchError(f"device '{name}' is not available: {here}.", hints=[Hint("device")])
    return device


def describe_device(device: torch.device) -> str:
    """A readable device name for provenance, e.g. 'cuda:0 (NVIDIA H100 80GB HBM3)' or 'cpu'."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


@dataclass
class Evaluation:
    """The values of one measure over one collection, and where they came from."""

    collection: Collection
    spec: MeasureSpec
    params: dict[str, Any]
    protocol: dict[str, Any]
    key: str
    device: str
    values: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    computed: int = 0
    cached: int = 0
    elsewhere: int = 0          # computed meanwhile by another run on the same store
    bootstrap: Bootstrap = field(default_factory=Bootstrap)
    _scores: Scores | None = field(default=None, repr=False)

    def take(self, stored: dict[str, StoredValue], records: list[ModelRecord] | None = None) -> list[ModelRecord]:
        """Take the stored values of `records` (default: every model); returns those of them without one."""
        left = []
        for record in self.collection.models if records is None else records:
            if record.sha256 in stored:
                self.values[record.id] = stored[record.sha256].value
                self.seconds[record.id] = stored[record.sha256].seconds
            else:
                left.append(record)
        return left

    @property
    def orientation(self) -> int:
        """+1 when the card expects a larger value to mean worse generalization, -1 when better."""
        return 1 if self.spec.higher_means == "worse" else -1

    def aggregate_targets(self) -> dict[str, list[float]]:
        """Each target over the models from the manifest's aggregate errors and losses (what a collection without
        per-example outcomes can be scored on), named and ordered as ``standard_targets``."""
        models, shifts = self.collection.models, self.collection.shifts
        columns = {"train": {"error": [m.train_error for m in models], "loss": [m.train_loss for m in models]},
                   "test": {"error": [m.test_error for m in models], "loss": [m.test_loss for m in models]},
                   **{f"ood/{s}": {"error": [m.ood_error[s] for m in models], "loss": [m.ood_loss[s] for m in models]}
                      for s in shifts}}
        return {name: [sum(coefficient * columns[set_name][kind][i] for set_name, kind, coefficient in target.terms)
                       for i in range(len(models))]
                for name, target in standard_targets(shifts).items()}

    def hparams(self) -> dict[str, list[float]]:
        """Each hyperparameter over the models as numbers (non-numeric values by their grid position); fields that
        only name a checkpoint's weights are left out."""
        spec = self.collection.spec
        hparams = [{k: v for k, v in m.hparams.items() if k not in spec.weight_fields} for m in self.collection.models]
        return numeric_hparams(hparams, spec.grid)

    def scores(self) -> dict[str, dict[str, Any]]:
        """Every ranking metric of the measure against every target, with its interval for the test-set noise and
        its interval over models (the latter only where the collection keeps no per-example outcomes); computed
        once."""
        return self._scored().targets

    def _scored(self) -> Scores:
        if self._scores is None:
            collection = self.collection
            values = [self.values[m.id] for m in collection.models]
            sets = outcome_sets(collection)
            self._scores = score_targets(values, standard_targets(collection.shifts), sets, self.hparams(),
                                         bootstrap=self.bootstrap, orientation=self.orientation,
                                         aggregates=None if sets is not None else self.aggregate_targets())
        return self._scores

    def scoring(self) -> dict[str, Any]:
        """How the intervals were formed, and a fingerprint of the resamples: two results with the same fingerprint
        were scored on the same resamples (the leaderboard ranks measures resample by resample)."""
        collection = self.collection
        resampled = collection.has_outcomes
        sizes = collection.set_sizes() if resampled else {}
        samples = collection.example_samples() if resampled else {}
        fingerprint = {"models": [m.id for m in collection.models], "set_sizes": sizes, "samples": samples,
                       "resamples": self.bootstrap.resamples, "seed": self.bootstrap.seed}
        return {"bootstrap_resamples": self.bootstrap.resamples, "bootstrap_seed": self.bootstrap.seed,
                "interval_level": self.bootstrap.level,
                "interval": (INTERVALS if resampled else
                             "_ci_models only: percentile over models (the collection keeps no per-example outcomes)"),
                "examples_resampled": resampled, "set_sizes": sizes, "samples": samples,
                "resample_fingerprint": hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()}

    def tau_vs_hparams(self) -> dict[str, float]:
        """Kendall tau-b of the measure against each hyperparameter: what the measure tracks."""
        return tau_vs_hparams([self.values[m.id] for m in self.collection.models], self.hparams())

    def replicates(self) -> dict[str, list[float]]:
        """Each target's bootstrap replicates of Kendall tau-b, resample by resample (scored once)."""
        return self._scored().replicates


INTERVALS = ("_ci: the metric's expected value over evaluation sets of these sizes for these models (test-set "
             "noise): the point minus the 2.5-97.5% deviations of the metric on sets resampled around the "
             "target's plausible truth (the same examples for every model and for sets drawn on the same images); "
             "_ci_models: percentile interval over models drawn with replacement, the target as observed")


def outcome_sets(collection: Collection) -> dict[str, OutcomeSet] | None:
    """The collection's per-example outcomes as scoring takes them (verified on load; 0/1 errors as uint8), each set
    with the sample of examples it is drawn on, or None without them."""
    if not collection.has_outcomes:
        return None
    samples = collection.example_samples()
    return {name: OutcomeSet.of(outcomes["error"], outcomes["loss"], samples[name])
            for name, outcomes in collection.outcome_sets().items()}


# Computed values as an executor yields them: (records, their values, seconds per model, the device's description).
GroupValues = tuple[list[ModelRecord], list[float], float, str]


class Executor(Protocol):
    """Where a run's values are computed: this process (`LocalExecutor`) or a Ray cluster
    (`sharpbench.evaluation.cluster.RayExecutor`). Either yields each group's guarded values as it finishes; the
    caller alone writes the results store."""

    description: str

    def compute(self, spec: MeasureSpec, collection: Collection, records: list[ModelRecord],
                params: dict[str, Any], *, n: int | None, m: int | None, seed: int,
                many: bool) -> Iterator[GroupValues]: ...


@dataclass(frozen=True)
class LocalExecutor:
    """Computes in this process, on one device."""

    device: torch.device

    @property
    def description(self) -> str:
        return describe_device(self.device)

    def compute(self, spec: MeasureSpec, collection: Collection, records: list[ModelRecord],
                params: dict[str, Any], *, n: int | None, m: int | None, seed: int,
                many: bool) -> Iterator[GroupValues]:
        for done, values, seconds in compute_values(spec, collection, records, params, device=self.device, n=n,
                                                    m=m, seed=seed, many=many):
            yield done, values, seconds, self.description


# How often a run waiting for models that other runs claimed looks for their values.
_POLL_SECONDS = 1.0


def evaluate(spec: MeasureSpec, collection: Collection, store: ResultStore, *,
             overrides: dict[str, Any] | None = None, device: torch.device | None = None,
             n: int | None = None, m: int | None = None, seed: int = 0, progress: bool = True,
             group_models: bool = True, recompute: bool = False, executor: Executor | None = None) -> Evaluation:
    """Compute the measure on every model of the collection that the store does not already hold.

    The key is computed once per call, before any lookup: it imports the implementation, so a broken one is an
    error even when every value is stored. With `recompute`, stored values are ignored and overwritten. With
    `group_models`, a measure with a many-model form gets same-architecture models together (up to a memory
    cap); each group's values are stored as soon as it is done. `executor` computes them (default: this
    process, on `device`). Models that another run on the same store has claimed are not computed again: this
    run waits for their values (and takes over the claims of a run that died).
    """
    params = spec.bind(overrides)
    executor = executor or LocalExecutor(device or default_device())
    protocol = {**collection.protocol(n, m), "measure_seed": seed}
    key = measure_key(spec.name, params, protocol, spec.key_inputs(), read_inputs(spec, collection))
    evaluation = Evaluation(collection, spec, params, protocol, key, executor.description)
    missing = collection.models if recompute else evaluation.take(store.get_many(key))
    evaluation.cached = len(collection.models) - len(missing)
    if not missing:
        return evaluation
    store.require_writable(len(missing))
    many = group_models and spec.computes_many and "other_models" not in spec.uses
    bar = tqdm(total=len(missing), desc=f"{spec.name} on {collection.spec.name}", unit="model",
               disable=not progress)
    try:
        with store.holding_claims():
            first = True
            while missing:
                mine = store.claim(key, [record.sha256 for record in missing], over_values=recompute and first)
                todo = [record for record in missing if record.sha256 in mine]
                for records, values, seconds, where in executor.compute(spec, collection, todo, params, n=n, m=m,
                                                                        seed=seed, many=many):
                    for record, value in zip(records, values):
                        store.put(key, record.sha256, value, seconds, measure=spec.name, params=params,
                                  protocol=protocol, device=where, version=__version__)
                        evaluation.values[record.id], evaluation.seconds[record.id] = value, seconds
                    evaluation.computed += len(records)
                    bar.update(len(records))
                left = [record for record in missing if record.id not in evaluation.values]
                others = store.claimed_by_others(key)
                # what other runs finished: a value whose claim is gone (a recompute waits for the new value)
                evaluation.take(store.get_many(key), [record for record in left if record.sha256 not in others])
                missing = [record for record in left if record.id not in evaluation.values]
                evaluation.elsewhere += len(left) - len(missing)
                bar.update(len(left) - len(missing))
                if missing and not todo:
                    time.sleep(_POLL_SECONDS)
                first = False
    except KeyboardInterrupt:
        bar.close()
        done = len(evaluation.values)
        raise Interrupted(f"interrupted after {done} of {len(collection.models)} models; their values are kept "
                          f"in the results store.", hints=[Hint("resume")]) from None
    bar.close()
    return evaluation


def read_inputs(spec: MeasureSpec, collection: Collection) -> dict[str, Any] | None:
    """What a measure reads besides a model and the training data, as part of its values' key: for one that
    compares a model with its siblings, every model's siblings by checkpoint, so that a rebuilt sibling is never
    served a stale value. A collection where some model has no sibling is refused, with the fix."""
    if "other_models" not in spec.uses:
        return None
    siblings = {record.id: sorted(other.sha256 for other in collection.siblings(record))
                for record in collection.models}
    alone = [name for name, shas in siblings.items() if not shas]
    if alone:
        raise SharpbenchError(
            f"measure '{spec.name}' compares each model with the models of its configuration trained from other "
            f"seeds, but {len(alone)} of the {len(siblings)} models of {collection.spec.name} have none (e.g. "
            f"'{alone[0]}'; its card's seeds: {list(collection.spec.seeds) or 'one checkpoint per configuration'}). Use "
            f"a collection with several seeds per configuration, such as digits-vit, fashion-mnist-vit or "
            f"nli-tiny-bert.")
    by_model = {record.sha256: siblings[record.id] for record in collection.models}
    return {"siblings": hashlib.sha256(json.dumps(by_model, sort_keys=True).encode()).hexdigest()}


def compute_values(spec: MeasureSpec, collection: Collection, records: list[ModelRecord], params: dict[str, Any], *,
                   device: torch.device, n: int | None, m: int | None, seed: int,
                   many: bool) -> Iterator[tuple[list[ModelRecord], list[float], float]]:
    """Compute the measure on `records` with neither a lookup nor a write of the results store: yields (records,
    their values, seconds per model) group by group, each value checked by the integrity guard. What `evaluate`
    stores and `sharpbench leaderboard verify` compares with a published result; with `many`, same-architecture
    models go through the measure's many-model form together (the same values as one at a time up to the last bits,
    which a worst-case ascent can amplify: docs/cli.md, leaderboard verify)."""
    return _compute(spec, collection, _groups(collection, records, device, many), params, device, n, m, seed)


def compute_values_in(spec: MeasureSpec, collection: Collection, groups: list[list[ModelRecord]],
                      params: dict[str, Any], *, device: torch.device, n: int | None, m: int | None,
                      seed: int) -> Iterator[tuple[list[ModelRecord], list[float], float]]:
    """`compute_values` on the groups given (`leaderboard verify`: those a result was published in), each loaded in
    its turn; a group of one takes the one-model path, a larger one the many-model form."""
    loaded = ([(record, collection.load_model(record).to(device)) for record in group] for group in groups)
    return _compute(spec, collection, loaded, params, device, n, m, seed)


def _compute(spec: MeasureSpec, collection: Collection, groups: Iterable[list[tuple[ModelRecord, nn.Module]]],
             params: dict[str, Any], device: torch.device, n: int | None, m: int | None,
             seed: int) -> Iterator[tuple[list[ModelRecord], list[float], float]]:
    batches = [(inputs.to(device), labels.to(device)) for inputs, labels in collection.sharpness_batches(n, m)]
    reference = batches_snapshot(batches)    # once, outside the timed calls: every call is compared with it
    for group in groups:
        values, seconds = compute_group(spec, collection, params, group, batches, reference, device, seed)
        yield [record for record, _ in group], values, seconds


# A group of models evaluated together holds at most this many parameter bytes (their stacked copies, and the
# ascent's state, scale with it) and this many models.
_GROUP_BYTES = 256 << 20
_GROUP_MODELS = 64


def plan_groups(collection: Collection, records: list[ModelRecord], many: bool) -> list[list[ModelRecord]]:
    """The groups of `records` that a local run evaluates together (see `_groups`), without keeping the models:
    each is loaded on the CPU once to learn its architecture (what a cluster's driver does before sending the
    groups out, so that a value does not depend on the executor)."""
    if not many:
        return [[record] for record in records]
    return [[record for record, _ in group] for group in _groups(collection, records, torch.device("cpu"), many)]


def _groups(collection: Collection, records: list[ModelRecord], device: torch.device,
            many: bool) -> Iterator[list[tuple[ModelRecord, nn.Module]]]:
    """The records with their loaded models: one at a time, or grouped by architecture when `many`."""
    pending: dict[str, list[tuple[ModelRecord, nn.Module]]] = {}
    for record in records:
        model = collection.load_model(record).to(device)
        if not many:
            yield [(record, model)]
            continue
        key = architecture_key(model)
        group = pending.setdefault(key, [])
        group.append((record, model))
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        if len(group) >= min(_GROUP_MODELS, max(1, _GROUP_BYTES // max(size, 1))):
            yield pending.pop(key)
    yield from pending.values()


def compute_group(spec: MeasureSpec, collection: Collection, params: dict[str, Any],
                   group: list[tuple[ModelRecord, nn.Module]], batches: list[Batch], reference: list[Batch],
                   device: torch.device, seed: int) -> tuple[list[float], float]:
    """The guarded values of the measure on one model, or on a group of same-architecture ones, and the seconds
    per model (where a cluster's worker computes too)."""
    records, models = [record for record, _ in group], [model for _, model in group]
    single = len(group) == 1
    initial = collection.load_initial_state(records[0]) if single else None
    n_used = sum(len(labels) for _, labels in batches)    # the test inputs come in the batches' n and m
    context = MeasureContext(
        batches=list(batches),      # a list of its own: a measure that drops a batch is caught, not inherited
        device=device,
        generator=torch.Generator(device=device).manual_seed(seed),
        num_classes=collection.num_classes,
        loss_fn=collection.loss_fn,
        initial_state=None if initial is None else {k: v.to(device) for k, v in initial.items()},
        test_inputs=[x.to(device) for x in collection.test_input_batches(n_used, len(batches[0][1]))]
        if "test_inputs" in spec.uses else None,
        siblings=[collection.load_model(other).to(device) for other in collection.siblings(records[0])]
        if "other_models" in spec.uses and single else None,
    )
    start = time.perf_counter()
    values = run_guarded_many(spec, models, context, params, [f"model '{record.id}'" for record in records],
                              many=not single, batches=reference)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return values, (time.perf_counter() - start) / len(group)
