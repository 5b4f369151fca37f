"""`sharpbench collection export`: write a built collection as the folder `sharpbench collection pull` installs
(``manifest.json`` and the ``checkpoints/`` and ``outcomes/`` files it names), so that the very checkpoints behind
published results can be had on another machine. A rebuild elsewhere is not bit-identical (CPU arithmetic differs
by instruction set; docs/collections.md), so results can only be checked or extended on the build itself.

Every file is checked against the manifest's sha256 before it is written; files of another build left in the
folder are removed; the manifest is written last, so a folder holding one is complete."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sharpbench.collection.collection import Collection
from sharpbench.collection.files import CHECKPOINTS, MANIFEST, OUTCOMES, file_sha256, model_files
from sharpbench.errors import CollectionError, Hint
from sharpbench.paths import atomic_write


def export_collection(collection: Collection, target: Path) -> int:
    """Write the built ``collection`` under ``target`` in the layout `pull_collection` reads; returns the number of
    files written (files already there with the right sha256 are kept)."""
    name = collection.spec.name
    found = collection.read_manifest()
    if found is None:
        raise CollectionError(f"collection '{name}' is not built here (no {MANIFEST} in {collection.root}): "
                              f"nothing to export.", hints=[Hint("build", collection=name)])
    if not collection.is_built():
        raise collection.stale_error(MANIFEST)
    manifest, raw = found
    target = Path(target)
    (target / MANIFEST).unlink(missing_ok=True)     # the folder counts as incomplete until the new one is written
    named, written = set(), 0
    for entry in manifest["models"]:
        for relative, expected in model_files(entry):
            source, destination = collection.root / relative, target / relative
            named.add(destination)
            if destination.is_file() and file_sha256(destination) == expected:
                continue
            blob = source.read_bytes()
            if hashlib.sha256(blob).hexdigest() != expected:
                raise CollectionError(f"{source} fails its integrity check against {collection.manifest_path}: "
                                      f"the build is damaged; nothing more was exported.", hints=collection.fix)
            atomic_write(destination, blob)
            written += 1
    for folder in (CHECKPOINTS, OUTCOMES):
        for stale in sorted((target / folder).glob("*")):
            if stale.is_file() and stale not in named:
                stale.unlink()
    atomic_write(target / MANIFEST, raw)
    return written
