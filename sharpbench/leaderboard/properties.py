"""Published measure properties: ``LEADERBOARD/properties/MEASURE.json``, the document of `sharpbench measure check
--publish`, validated by a JSON Schema; and what the leaderboard shows of them beside a result: invariance to
rescaling and to permutation, and the cost in forward+backward passes, or 'not checked' (no file) or 'stale' (the
file checked another implementation than the one the result was computed with)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


from sharpbench.evaluation.properties import REQUIRED
from sharpbench.leaderboard.results import LeaderboardError, dump, packaged_schema, schema_violation

PROPERTIES = "properties"
NOT_CHECKED, STALE = "not checked", "stale"


def validate_properties(document: Any, where: Path | str) -> None:
    """Raise LeaderboardError naming the file and the first field that does not match the schema
    (sharpbench/schemas/properties.schema.json)."""
    violation = schema_violation(document, packaged_schema("properties.schema.json"))
    if violation is not None:
        raise LeaderboardError(f"{where}: {violation}. Properties files are written by `measure check --publish`, "
                               f"never by hand.")


def publish_properties(document: dict[str, Any], root: Path) -> Path:
    """Write a check's document to ``root/properties/MEASURE.json`` (validated first)."""
    path = Path(root) / PROPERTIES / f"{document['measure']}.json"
    validate_properties(document, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump(document), encoding="utf-8")
    return path


def load_properties(root: Path) -> dict[str, dict[str, Any]]:
    """{measure: document} of every properties file under ``root/properties`` (none: an empty dict), validated."""
    found = {}
    for path in sorted((Path(root) / PROPERTIES).glob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise LeaderboardError(f"{path}: not valid JSON ({error}).") from None
        validate_properties(document, path)
        if document["measure"] != path.stem:
            raise LeaderboardError(f"{path}: holds measure '{document['measure']}', whose properties belong in "
                                   f"{path.with_name(document['measure'] + '.json')}.")
        found[path.stem] = document
    return found


def attach_properties(documents: list[dict[str, Any]], root: Path) -> list[dict[str, Any]]:
    """Each result document (a shallow copy) with ``measure_properties``: the properties file of its measure, or
    None, and whether it checked the implementation that computed the result."""
    known = load_properties(root)
    out = []
    for document in documents:
        checked = known.get(document["measure"])
        status = NOT_CHECKED if checked is None else (
            "checked" if checked["provenance"]["implementation"]["source_sha256"]
            == document["provenance"]["implementation"]["source_sha256"] else STALE)
        out.append({**document, "measure_properties": {"status": status, "document": checked}})
    return out


def _checked(document: dict[str, Any]) -> dict[str, Any] | None:
    found = document.get("measure_properties") or {"status": NOT_CHECKED}
    return found["document"] if found["status"] == "checked" else None


def _status(document: dict[str, Any]) -> str:
    return (document.get("measure_properties") or {"status": NOT_CHECKED})["status"]


def _yes_no(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "n/a"}[value]


def invariance_text(document: dict[str, Any]) -> str:
    """'yes / no': invariant to rescaling / to permutation, or 'not checked', or 'stale'."""
    checked = _checked(document)
    if checked is None:
        return _status(document)
    properties = checked["properties"]
    text = f"{_yes_no(properties['rescaling_invariant'])} / {_yes_no(properties['permutation_invariant'])}"
    failed = [name for name, holds in properties.items() if holds is False and name in REQUIRED]
    return text + (f" (fails: {', '.join(failed)})" if failed else "")


def invariance_value(document: dict[str, Any]) -> int | None:
    """A sort key: how many of the two invariances hold (None when not checked or stale)."""
    checked = _checked(document)
    if checked is None:
        return None
    return sum(bool(checked["properties"][name]) for name in ("rescaling_invariant", "permutation_invariant"))


def cost_value(document: dict[str, Any]) -> float | None:
    """The measure's cost in forward+backward passes on the check's MLP (None when not checked or stale)."""
    checked = _checked(document)
    return None if checked is None else checked["cost_passes"]


def cost_text(document: dict[str, Any]) -> str:
    """The cost as text, three significant digits, or why there is none."""
    checked = _checked(document)
    if checked is None:
        return _status(document)
    return "n/a" if checked["cost_passes"] is None else f"{checked['cost_passes']:.3g}"
