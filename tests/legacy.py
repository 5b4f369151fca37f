"""A built collection turned back into what the code before per-example outcomes wrote (manifest format 1)."""

from __future__ import annotations

import json
import shutil

from sharpbench.collection.collection import Collection

OUTCOME_FIELDS = ("outcomes_file", "outcomes_sha256")


def strip_outcomes(collection: Collection) -> None:
    """Delete the outcome files and their fields from the manifest and the records, as a format-1 build left them
    (the manifest written with the same JSON layout: indent 1, keys in the same order)."""
    shutil.rmtree(collection.root / "outcomes")
    manifest = json.loads(collection.manifest_path.read_bytes())
    manifest["format"] = 1
    del manifest["set_sizes"]
    for entry in manifest["models"]:
        for key in OUTCOME_FIELDS:
            del entry[key]
    collection.manifest_path.write_bytes(json.dumps(manifest, indent=1, allow_nan=False).encode())
    for path in (collection.root / "records").glob("*.json"):
        record = json.loads(path.read_bytes())
        for key in OUTCOME_FIELDS:
            record.pop(key, None)
        path.write_bytes(json.dumps(record, indent=1, allow_nan=False).encode())
