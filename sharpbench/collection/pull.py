"""`sharpbench collection pull`: fetch a published collection and verify every file against its sha256.

A published collection is a folder (or a URL of one) with the layout that a build writes:
``manifest.json`` and the ``checkpoints/`` and ``outcomes/`` files it names. The manifest must come from the same card as the
local one (same card sha256); each checkpoint and outcome file is downloaded, hashed, and written only when its sha256
matches the manifest's, so a flipped byte is an error naming the file and nothing corrupt is installed.
A pull that stops part-way resumes: files already present with the right hash are not fetched again.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any

from sharpbench.collection.collection import Collection
from sharpbench.collection.files import CHECKPOINTS, MANIFEST, OUTCOMES, build_lock, file_sha256, model_files
from sharpbench.collection.manifest import parse_manifest
from sharpbench.errors import CollectionError
from sharpbench.paths import atomic_write


def _is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme in ("http", "https", "file")


def _fetch(source: str, relative: str) -> bytes:
    """The bytes of ``relative`` under a folder or URL; a missing file is a CollectionError naming it."""
    if _is_url(source):
        url = source.rstrip("/") + "/" + urllib.parse.quote(relative)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - the user names the source
                return response.read()
        except (urllib.error.URLError, OSError) as error:
            raise CollectionError(f"cannot fetch {url} ({error}); check --from and the network") from None
    path = Path(source).expanduser() / relative
    try:
        return path.read_bytes()
    except OSError as error:
        raise CollectionError(f"cannot read {path} ({error.strerror}); --from must be a folder holding "
                              f"{MANIFEST} and {CHECKPOINTS}/ (or a URL of one)") from None


def _safe_relative(value: Any, where: str) -> str:
    """A manifest path must stay inside the collection folder (no absolute paths, no '..')."""
    relative = PurePosixPath(str(value))
    if (relative.is_absolute() or ".." in relative.parts or not relative.parts
            or relative.parts[0] not in (CHECKPOINTS, OUTCOMES)):
        raise CollectionError(f"{where}: file path {value!r} is not under {CHECKPOINTS}/ or {OUTCOMES}/; refusing to "
                              f"write it")
    return str(relative)


def pull_collection(collection: Collection, source: str, manifest_sha256: str | None = None) -> int:
    """Install the published collection at ``source`` (folder or URL) into ``collection.root``; returns the
    number of files fetched. The manifest is written last, so the collection counts as built only when
    every file is in place and verified."""
    raw = _fetch(source, MANIFEST)
    where = f"{source.rstrip('/')}/{MANIFEST}"
    found = hashlib.sha256(raw).hexdigest()
    if manifest_sha256 is not None and found != manifest_sha256.lower():
        raise CollectionError(f"{where} has sha256 {found}, not the {manifest_sha256} given with --manifest-sha256; "
                              f"the source is not the published version")
    manifest = parse_manifest(raw, where)
    entries = manifest["models"]
    spec = collection.spec
    if manifest.get("collection") != spec.name:
        raise CollectionError(f"{where} is the manifest of collection {manifest.get('collection')!r}, not {spec.name!r}")
    if manifest.get("card_sha256") != spec.card_sha256:
        raise CollectionError(f"{where} was built from another version of the card (card sha256 "
                              f"{manifest.get('card_sha256')}, yours {spec.card_sha256} at {spec.path}); pull a "
                              f"matching version, or use the card it was built from")
    fetched = 0
    with build_lock(collection.root):
        for entry in entries:
            for named, expected in model_files(entry):
                relative = _safe_relative(named, where)
                target = collection.root / relative
                if target.is_file() and file_sha256(target) == expected:
                    continue
                blob = _fetch(source, relative)
                got = hashlib.sha256(blob).hexdigest()
                if got != expected:
                    raise CollectionError(f"{source.rstrip('/')}/{relative} fails its integrity check (sha256 {got}, "
                                          f"the manifest says {expected}): the file is corrupt or was altered; it "
                                          f"was not installed")
                atomic_write(target, blob)
                fetched += 1
        atomic_write(collection.manifest_path, raw)
    return fetched
