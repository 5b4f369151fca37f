"""Published results: ``LEADERBOARD/results/COLLECTION/VARIANT.json``, validated by a JSON Schema.

Each file is the document of one :class:`~sharpbench.evaluation.report.Report`. VARIANT is the measure's name
when it ran with its card's default parameters and the collection's default sharpness-data protocol (and seed 0),
and NAME@KEY12 (the first 12 hex digits of the measure key) otherwise, so a run with other parameters never
overwrites the default one (``sharpbench.evaluation.report.variant``)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from sharpbench.errors import Hint, SharpbenchError
from sharpbench.evaluation.report import Report

RESULTS = "results"


class LeaderboardError(SharpbenchError):
    """A leaderboard file is malformed or missing: names the file, what is wrong and the fix."""


@lru_cache(maxsize=None)
def packaged_schema(name: str) -> dict[str, Any]:
    """A JSON Schema shipped with the package (sharpbench/schemas/NAME)."""
    return json.loads(resources.files("sharpbench").joinpath(f"schemas/{name}").read_text("utf-8"))


def result_schema() -> dict[str, Any]:
    """The JSON Schema of a result file (sharpbench/schemas/result.schema.json)."""
    return packaged_schema("result.schema.json")


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
