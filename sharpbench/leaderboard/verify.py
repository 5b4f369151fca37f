"""Verification of published results: recompute a seeded sample of each result file's models from its collection
and measure, and compare the values with the stored ones within the measure card's tolerance.

Nothing here reads or writes the results store: a verification is never served from a cache. The values come
from the evaluation machinery itself (``sharpbench.evaluation.run.compute_values_in``: the same sharpness batches,
seeded generator and integrity guard as ``evaluate``, in the groups the result was published in)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from sharpbench.cards.discovery import Registry
from sharpbench.cards.measure_card import MeasureSpec
from sharpbench.collection.collection import Collection, open_collection
from sharpbench.data.locate import DataPaths
from sharpbench.errors import CollectionError, Hint, SharpbenchError, UnknownNameError
from sharpbench.evaluation.run import compute_values_in, plan_groups
from sharpbench.leaderboard.builds import install_published
from sharpbench.leaderboard.results import RESULTS, load_results

Verdict = Literal["verified", "failed", "not verifiable"]
DIGESTS = ("source_sha256", "kernels_sha256", "card_version")   # what pins the code, besides its origin


def relative_difference(stored: float, recomputed: float) -> float:
    """|stored - recomputed| / max(|stored|, |recomputed|), 0 when they are equal (symmetric, as math.isclose)."""
    if stored == recomputed:
        return 0.0
    return abs(stored - recomputed) / max(abs(stored), abs(recomputed))


@dataclass(frozen=True)
class Mismatch:
    """A recomputed value that differs from the stored one by more than the tolerance."""

    model: str
    stored: float
    recomputed: float
    relative: float


@dataclass
class FileCheck:
    """The verification of one result file: what was compared and the verdict, or why it could not be checked."""

    path: Path
    document: dict[str, Any]
    groups: list[list[str]] = field(default_factory=list)     # the checked model ids, as recomputed together
    tolerance: float | None = None
    differences: dict[str, float] = field(default_factory=dict)  # model id -> relative difference
    mismatches: list[Mismatch] = field(default_factory=list)
    other_code: list[str] = field(default_factory=list)      # the digests that differ from the result's
    other_collection: bool = False                           # the local manifest is not the result's
    problem: SharpbenchError | None = None                   # why the file could not be checked
    spec: MeasureSpec | None = field(default=None, repr=False)
    collection: Collection | None = field(default=None, repr=False)

    @property
    def verdict(self) -> Verdict:
        """failed when a value differs beyond the tolerance, not verifiable when it could not be recomputed."""
        if self.mismatches:
            return "failed"
        return "not verifiable" if self.problem is not None else "verified"

    @property
    def models(self) -> list[str]:
        """The checked model ids, in the file's order."""
        checked = {model_id for group in self.groups for model_id in group}
        return [model_id for model_id in self.document["models"] if model_id in checked]

    @property
    def max_relative(self) -> float | None:
        """The largest relative difference over the models checked (None before any)."""
        return max(self.differences.values()) if self.differences else None


def sample_models(document: dict[str, Any], sample: int, seed: int) -> list[str]:
    """`sample` model ids of a result, drawn by a generator seeded with `seed` and the file's collection and
    variant (so two runs check the same models, and files differ in which they check); every model when `sample`
    is 0 or at least their number. Returned in the file's order."""
    ids = list(document["models"])
    if sample <= 0 or sample >= len(ids):
        return ids
    picked = set(random.Random(f"{seed}/{document['collection']}/{document['variant']}").sample(ids, sample))
    return [model_id for model_id in ids if model_id in picked]


def plan(root: Path, registry: Registry, *, sample: int, seed: int, home: Path | None = None,
         data_paths: DataPaths | None = None) -> list[FileCheck]:
    """One FileCheck per result file under ``root/results``, its measure, collection and sample resolved; a file
    that cannot be checked here carries its problem (and the fix) instead."""
    checks: list[FileCheck] = []
    planned: dict[tuple[str, ...], list[list[str]]] = {}    # (build, model ids) -> published groups: planned once
    for document in load_results(root):
        check = FileCheck(Path(root) / RESULTS / document["collection"] / f"{document['variant']}.json", document)
        try:
            _resolve(check, registry, sample, seed, home, data_paths, Path(root), planned)
        except SharpbenchError as problem:
            check.problem = problem
        checks.append(check)
    return checks


def _resolve(check: FileCheck, registry: Registry, sample: int, seed: int, home: Path | None,
             data_paths: DataPaths | None, root: Path, planned: dict[tuple[str, ...], list[list[str]]]) -> None:
    document = check.document
    implementation = document["provenance"]["implementation"]
    try:
        spec = registry.measure(document["measure"])
    except UnknownNameError:
        raise SharpbenchError(f"measure '{document['measure']}' is not registered here (its code came from "
                              f"{implementation['origin']}).", hints=[Hint("include_path")]) from None
    collection = open_collection(registry.collection(document["collection"]), home, data_paths)
    install_published(collection, root)     # the very build the results came from, where it is published
    if collection.read_manifest() is None:
        raise CollectionError(f"collection '{collection.spec.name}' is not built here (no manifest in "
                              f"{collection.root}).", hints=[Hint("build", collection=collection.spec.name)])
    if not collection.is_built():
        raise collection.stale_error("manifest.json")
    spec.bind(document["params"])       # a parameter the card no longer has is an error naming it
    current = asdict(spec.implementation())
    check.other_code = [name for name in DIGESTS if current[name] != implementation[name]]
    check.other_collection = collection.manifest_sha256 != document["provenance"]["manifest_sha256"]
    local = {record.id for record in collection.models}
    absent = [model_id for model_id in document["models"] if model_id not in local]
    if absent:
        raise CollectionError(f"collection '{collection.spec.name}' built here has no model '{absent[0]}' "
                              f"({len(absent)} of the result's models are absent): it was built from other "
                              f"checkpoints.", hints=[Hint("rebuild", collection=collection.spec.name)])
    check.spec, check.collection, check.tolerance = spec, collection, spec.tolerance
    sampled = sample_models(document, sample, seed)
    if not spec.computes_many:
        check.groups = [[model_id] for model_id in sampled]
        return
    key = (collection.manifest_sha256, *document["models"])
    if key not in planned:
        records = {record.id: record for record in collection.models}
        planned[key] = [[record.id for record in group] for group in
                        plan_groups(collection, [records[i] for i in document["models"]], many=True)]
    check.groups = published_groups(planned[key], sampled)


def published_groups(planned: list[list[str]], sampled: list[str]) -> list[list[str]]:
    """The groups to recompute the sampled models of a many-model measure in, from the groups `evaluate` published
    them in (`plan_groups`: same architecture, up to a cap), so that each value takes the path it was published from.

    The stacked path gives a model the same value in any group of two or more, but a model alone takes the one-model
    path, whose last bits differ and which a worst-case ascent can amplify (diag-linear-nets: up to 6e-2 relative).
    So a model published alone is recomputed alone, and a sampled model whose published group had others is
    recomputed with at least one of them (a companion, also compared)."""
    chosen, groups = set(sampled), []
    for ids in planned:
        picked = [model_id for model_id in ids if model_id in chosen]
        if len(picked) == 1 and len(ids) > 1:
            companion = ids[1] if picked[0] == ids[0] else ids[0]
            picked = [model_id for model_id in ids if model_id in (picked[0], companion)]
        if picked:
            groups.append(picked)
    return groups


def recompute(check: FileCheck, device: torch.device, on_values: Callable[[int], None] = lambda count: None) -> None:
    """Recompute the checked models of a resolved check, group by group, and compare them with the stored values;
    `on_values` gets the number of models done after each group. A measure that fails becomes the check's
    problem."""
    if check.spec is None or check.collection is None:
        raise ValueError(f"{check.path}: not resolved (plan it first); problem: {check.problem}")
    document, spec, collection = check.document, check.spec, check.collection
    protocol = document["provenance"]["protocol"]
    records = {record.id: record for record in collection.models}
    try:
        groups = [[records[i] for i in group] for group in check.groups]
        for done, values, _ in compute_values_in(spec, collection, groups, spec.bind(document["params"]),
                                                 device=device, n=protocol["n"], m=protocol["m"],
                                                 seed=protocol.get("measure_seed", 0)):
            for record, value in zip(done, values):
                stored = document["models"][record.id]["value"]
                difference = relative_difference(stored, value)
                check.differences[record.id] = difference
                if not difference <= spec.tolerance:     # NaN never passes
                    check.mismatches.append(Mismatch(record.id, stored, value, difference))
            on_values(len(done))
    except SharpbenchError as problem:
        check.problem = problem
