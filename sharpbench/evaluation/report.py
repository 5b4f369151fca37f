"""The report of one evaluation: the one document that `sharpbench evaluate --json` writes and the leaderboard
publishes (``LEADERBOARD/results/COLLECTION/VARIANT.json``, validated by sharpbench/schemas/result.schema.json).

It holds enough to recompute every score from its per-model entries, and the provenance of every number: code
version, cards, manifest hash, sharpness-data protocol, device and time taken."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from sharpbench.collection.collection import ModelRecord
from sharpbench.evaluation.run import Evaluation
from sharpbench.jsonsafe import finite_or_none
from sharpbench.version import __version__, git_commit

FORMAT = 3  # of the document; a change of its shape raises it (and the schema's "format" const)


def variant(evaluation: Evaluation) -> str:
    """The measure's name, with @KEY12 (12 hex digits of the measure key) unless its parameters, the sharpness-data
    protocol and the seed are the defaults: a run with other parameters never takes the default's name."""
    defaults = evaluation.spec.bind() == evaluation.params and \
        evaluation.protocol == {**evaluation.collection.protocol(), "measure_seed": 0}
    return evaluation.spec.name if defaults else f"{evaluation.spec.name}@{evaluation.key[:12]}"


@dataclass(frozen=True)
class Report:
    """One measure scored on one collection, field for field the published result document (less its format)."""

    collection: str
    collection_description: str
    measure: str
    measure_description: str
    measure_source: str
    variant: str
    params: dict[str, Any]
    higher_means: str
    uses: list[str]
    orientation: int
    n_models: int
    scores: dict[str, dict[str, Any]]
    tau_vs_hparams: dict[str, float]
    scoring: dict[str, Any]
    replicates: dict[str, list[float | None]]
    models: dict[str, dict[str, Any]]
    provenance: dict[str, Any]
    external: dict[str, str] | None = None   # {"origin": ...} for a measure whose code is not in measures/

    @classmethod
    def of(cls, evaluation: Evaluation) -> Report:
        """The report of a finished evaluation (scores it, once, if it was not scored yet)."""
        spec, collection = evaluation.spec, evaluation.collection
        seconds = evaluation.seconds
        implementation = spec.implementation()
        return cls(
            collection=collection.spec.name,
            collection_description=collection.spec.description,
            measure=spec.name,
            measure_description=spec.description,
            measure_source=spec.source,
            variant=variant(evaluation),
            params=evaluation.params,
            higher_means=spec.higher_means,
            uses=list(spec.uses),
            orientation=evaluation.orientation,
            n_models=len(collection.models),
            scores=evaluation.scores(),
            tau_vs_hparams=evaluation.tau_vs_hparams(),
            scoring=evaluation.scoring(),
            replicates={target: [None if not math.isfinite(x) else round(float(x), 4) for x in replicates]
                        for target, replicates in evaluation.replicates().items() if target == "test_error"},
            models={m.id: _model_entry(m, evaluation.values[m.id], seconds[m.id]) for m in collection.models},
            provenance={
                "sharpbench_version": __version__,
                "git_commit": git_commit(),
                "measure_key": evaluation.key,
                "measure_card_sha256": spec.card_sha256,
                "implementation": asdict(implementation),
                "collection_card_sha256": collection.spec.card_sha256,
                "manifest_sha256": collection.manifest_sha256,
                "protocol": evaluation.protocol,
                "device": evaluation.device,
                "seconds_per_model": sum(seconds.values()) / len(seconds) if seconds else None,
            },
            external=None if implementation.in_tree else {"origin": implementation.origin},
        )

    def document(self) -> dict[str, Any]:
        """The JSON document: its format first, then the fields in order, every non-finite number as null; the
        `external` field only for an external result (a file without it is in-tree)."""
        fields = asdict(self)
        if fields["external"] is None:
            del fields["external"]
        return finite_or_none({"format": FORMAT, **fields})


def _model_entry(record: ModelRecord, value: float, seconds: float) -> dict[str, Any]:
    return {"value": value, "seconds": seconds, "hparams": record.hparams, "train_error": record.train_error,
            "test_error": record.test_error, "ood_error": dict(record.ood_error), "train_loss": record.train_loss,
            "test_loss": record.test_loss, "ood_loss": dict(record.ood_loss)}
