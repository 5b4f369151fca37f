"""Re-scoring published results (`sharpbench leaderboard rescore`): every result file's scores computed again by the
current scoring code, from the file's own values and the per-example outcomes of the build it was published on.

Only the scores change: the values, their seconds, device and the commit that computed them stay as published, and
``provenance.scoring_commit`` records the commit that scored them. A file is re-scored only where its values are
what the current code would compute: its measure's code digests equal this checkout's and its manifest is the
published build's; any other file is left as it is and reported (republish it with ``evaluate --publish``). Each
file is written whole to a temporary name and then renamed over the old one, so a failure never leaves a
truncated result."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from sharpbench.cards.discovery import Registry
from sharpbench.collection.collection import Collection, open_collection
from sharpbench.data.locate import DataPaths
from sharpbench.errors import CollectionError, Hint, SharpbenchError, UnknownNameError
from sharpbench.evaluation.report import FORMAT
from sharpbench.evaluation.run import Evaluation
from sharpbench.leaderboard.builds import install_published
from sharpbench.leaderboard.results import RESULTS, dump, validate_result
from sharpbench.leaderboard.verify import DIGESTS
from sharpbench.version import git_commit


@dataclass(frozen=True)
class Rescored:
    """What happened to one result file: re-scored, or left alone and why."""

    path: Path
    problem: str | None = None


def _collection(name: str, registry: Registry, root: Path, home: Path | None, data_paths: DataPaths | None,
                opened: dict[str, Collection]) -> Collection:
    if name not in opened:
        collection = open_collection(registry.collection(name), home, data_paths)
        install_published(collection, root)
        if not collection.is_built() or not collection.has_outcomes:
            raise CollectionError(f"collection '{name}' is not built here with per-example outcomes.",
                                  hints=[Hint("build", collection=name)])
        opened[name] = collection
    return opened[name]


def rescore_document(document: dict[str, Any], registry: Registry, collection: Collection) -> dict[str, Any]:
    """The document with its scores, scoring, replicates and format as the current code makes them; an error when
    its values are not what the current code would compute on this build."""
    try:
        spec = registry.measure(document["measure"])
    except UnknownNameError:
        raise SharpbenchError(f"measure '{document['measure']}' is not registered here") from None
    implementation = asdict(spec.implementation())
    published = document["provenance"]["implementation"]
    other = [name for name in DIGESTS if implementation[name] != published[name]]
    if other:
        raise SharpbenchError(f"computed by other code ({', '.join(other)} differ from this checkout's): republish "
                              f"it with `sharpbench evaluate --publish`")
    if collection.manifest_sha256 != document["provenance"]["manifest_sha256"]:
        raise SharpbenchError("computed on another build of the collection than the published one")
    ids = [record.id for record in collection.models]
    if sorted(ids) != sorted(document["models"]):
        raise SharpbenchError("its models are not the collection's")
    provenance = document["provenance"]
    evaluation = Evaluation(collection, spec, document["params"], provenance["protocol"], provenance["measure_key"],
                            provenance["device"], values={i: document["models"][i]["value"] for i in ids})
    replicates = evaluation.replicates()["test_error"]
    return {**document, "format": FORMAT, "scores": evaluation.scores(), "scoring": evaluation.scoring(),
            "replicates": {"test_error": [None if x != x else round(float(x), 4) for x in replicates]},
            "provenance": {**provenance, "scoring_commit": git_commit()}}


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it over ``path``."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def rescore(root: Path, registry: Registry, *, home: Path | None = None, data_paths: DataPaths | None = None,
            collections: list[str] | None = None, on_file: Callable[[Rescored], None] = lambda done: None) -> list[Rescored]:
    """Re-score every result file under ``root/results`` (of ``collections``, default all)."""
    done: list[Rescored] = []
    opened: dict[str, Collection] = {}
    for path in sorted((Path(root) / RESULTS).glob("*/*.json")):
        if collections and path.parent.name not in collections:
            continue
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            collection = _collection(document["collection"], registry, Path(root), home, data_paths, opened)
            rescored = rescore_document(document, registry, collection)
            validate_result(rescored, path)
            write_atomically(path, dump(rescored))
            outcome = Rescored(path)
        except SharpbenchError as problem:
            outcome = Rescored(path, str(problem))
        done.append(outcome)
        on_file(outcome)
    return done
