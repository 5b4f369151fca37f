"""manifest.json: the one reader and writer of a collection's manifest, validated against its JSON Schema.

The manifest says what was built from which card (its sha256), with which versions, on which data, and lists one
entry per kept model (:class:`sharpbench.collection.records.ModelRecord`) and the models the convergence filter
excluded. Format 2 adds each model's outcome file and the size of each evaluation set; a format-1 manifest (built
before per-example outcomes) or an import not scored yet still loads, and `collection build` adds them.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import jsonschema

from sharpbench.collection.records import MODEL_KEYS
from sharpbench.errors import CollectionError, Hint
from sharpbench.jsonsafe import finite_or_none
from sharpbench.paths import atomic_write

MANIFEST_FORMAT = 2


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(resources.files("sharpbench").joinpath("schemas/manifest.schema.json").read_text("utf-8"))
    return jsonschema.Draft202012Validator(schema)


def parse_manifest(raw: bytes, where: Path | str, fix: Sequence[Hint] = ()) -> dict[str, Any]:
    """The manifest in ``raw``, checked against the schema; a CollectionError naming ``where`` and the first field
    that does not match (with the hints ``fix``) otherwise."""
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise CollectionError(f"{where} is not valid JSON.", hints=fix) from None
    error = jsonschema.exceptions.best_match(_validator().iter_errors(manifest))
    if error is not None:
        field = "/".join(str(part) for part in error.absolute_path) or "<top level>"
        raise CollectionError(f"{where} is not a collection manifest (field '{field}': {error.message}).", hints=fix)
    return manifest


def read_manifest(path: Path, fix: Sequence[Hint] = ()) -> tuple[dict[str, Any], bytes] | None:
    """(manifest, its bytes) of the manifest at ``path``, None when there is none; see :func:`parse_manifest`."""
    try:
        raw = Path(path).read_bytes()
    except (FileNotFoundError, NotADirectoryError):   # nothing there, or a folder above it is a file
        return None
    return parse_manifest(raw, path, fix), raw


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The bytes written for ``manifest`` (format :data:`MANIFEST_FORMAT`): model entries keep only the manifest's
    fields, in their fixed order; non-finite numbers become null."""
    written = {**manifest, "format": MANIFEST_FORMAT,
               "models": [{key: entry[key] for key in MODEL_KEYS if key in entry} for entry in manifest["models"]]}
    error = jsonschema.exceptions.best_match(_validator().iter_errors(finite_or_none(written)))
    assert error is None, f"a manifest that does not match its schema: {error.message if error else ''}"
    return json.dumps(finite_or_none(written), indent=1, allow_nan=False).encode()


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` atomically (see :func:`manifest_bytes`)."""
    atomic_write(Path(path), manifest_bytes(manifest))
