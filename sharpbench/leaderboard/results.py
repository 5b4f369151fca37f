"""Published results: ``LEADERBOARD/results/COLLECTION/VARIANT.json``, validated by a JSON Schema.

Each file is the document of one :class:`~sharpbench.evaluation.report.Report`. VARIANT is the measure's name
when it ran with its card's default parameters and the collection's default sharpness-data protocol (and seed 0),
and NAME@KEY12 (the first 12 hex digits of the measure key) otherwise, so a run with other parameters never
overwrites the default one (``sharpbench.evaluation.report.variant``)."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from sharpbench.errors import Hint, SharpbenchError
from sharpbench.evaluation.report import Report
from sharpbench.scoring.metrics import METRICS

RESULTS = "results"


class LeaderboardError(SharpbenchError):
    """A leaderboard file is malformed or missing: names the file, what is wrong and the fix."""


@lru_cache(maxsize=None)
def packaged_schema(name: str) -> dict[str, Any]:
    """A JSON Schema shipped with the package (sharpbench/schemas/NAME)."""
    return json.loads(resources.files("sharpbench").joinpath(f"schemas/{name}").read_text("utf-8"))


@lru_cache(maxsize=None)
def result_schema() -> dict[str, Any]:
    """The JSON Schema of a result file: sharpbench/schemas/result.schema.json, with the score entry's definition
    generated from the metric declarations (:data:`sharpbench.scoring.metrics.METRICS`)."""
    schema = copy.deepcopy(packaged_schema("result.schema.json"))
    schema["$defs"]["score"] = score_schema()
    return schema


def score_schema() -> dict[str, Any]:
    """The JSON Schema of one target's score entry, read from the metric declarations."""
    number, interval = {"$ref": "#/$defs/number"}, {"$ref": "#/$defs/interval"}
    properties: dict[str, Any] = {}
    oriented: dict[str, Any] = {}
    for metric in METRICS.values():
        trio = {metric.name: number, f"{metric.name}_ci": interval, f"{metric.name}_ci_models": interval}
        properties.update(trio)
        if metric.oriented:
            oriented.update(trio)
        if metric.parts:
            properties[f"{metric.name}_per_{metric.parts}"] = {"$ref": "#/$defs/numbers"}
            properties[f"{metric.name}_per_{metric.parts}_ci"] = {"$ref": "#/$defs/intervals"}
        properties.update(metric.fields)
    family = {"type": "object", "additionalProperties": False, "required": ["mean", "p90", "max", "kept", "total"],
              "properties": {"mean": number, "p90": number, "max": number,
                             "kept": {"type": "integer", "minimum": 0}, "total": {"type": "integer", "minimum": 0},
                             "reason": {"type": ["string", "null"],
                                        "description": "why no environment was kept (null when some were)"}}}
    properties.update({
        "oriented": {"type": "object", "additionalProperties": False, "required": sorted(oriented),
                     "properties": oriented},
        "noise_ceiling": number, "noise_ceiling_ci": interval,
        "reliability": {**number, "description": "k^2: the share of the observed spread between models that is not "
                                                 "test-set noise (method of moments)"},
        "kendall_tau_of_ceiling": number, "kendall_tau_of_ceiling_ci": interval,
        "robust_sign_error": {"type": ["object", "null"], "additionalProperties": family},
        "n_examples": {"type": ["integer", "null"], "minimum": 1},
        "examples_resampled": {"type": "boolean", "description": "whether the _ci intervals resample the examples"},
        "notes": {"type": "object", "additionalProperties": {"type": "string"},
                  "description": "why a score is undefined, by score name"},
    })
    return {"type": "object", "additionalProperties": False, "required": sorted(properties),
            "properties": properties}


def schema_violation(document: Any, schema: dict[str, Any]) -> str | None:
    """"field 'PATH': MESSAGE" for the violation of `schema` that best explains what is wrong, or None."""
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(document))
    if error is None:
        return None
    return f"field '{'/'.join(str(part) for part in error.absolute_path) or '<top level>'}': {error.message}"


def validate_result(document: Any, where: Path | str) -> None:
    """Raise LeaderboardError naming the file and the first field that does not match the schema."""
    violation = schema_violation(document, result_schema())
    if violation is not None:
        raise LeaderboardError(f"{where}: {violation}. Result files are written by publishing an evaluation.",
                               hints=[Hint("publish")])


def publish(report: Report, root: Path) -> Path:
    """Write a report's document to ``root/results/COLLECTION/VARIANT.json`` (validated first)."""
    document = report.document()
    path = Path(root) / RESULTS / report.collection / f"{report.variant}.json"
    validate_result(document, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump(document), encoding="utf-8")
    return path


def dump(document: dict[str, Any]) -> str:
    """The canonical text of a result file (stable key order as written, two-space indent, final newline)."""
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def load_results(root: Path) -> list[dict[str, Any]]:
    """Every result file under ``root/results``, validated, in (collection, variant) order."""
    folder = Path(root) / RESULTS
    if not folder.is_dir():
        raise LeaderboardError(f"{folder}: no results folder.", hints=[Hint("publish"), Hint("leaderboard_dir")])
    documents = []
    for path in sorted(folder.glob("*/*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise LeaderboardError(f"{path}: not valid JSON ({error}).", hints=[Hint("publish")]) from None
        validate_result(document, path)
        if (document["collection"], document["variant"]) != (path.parent.name, path.stem):
            raise LeaderboardError(f"{path}: holds collection '{document['collection']}', variant "
                                   f"'{document['variant']}', which belong in "
                                   f"{folder / document['collection'] / (document['variant'] + '.json')}.")
        documents.append(document)
    return documents
