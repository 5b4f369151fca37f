"""The builds behind the published results: ``LEADERBOARD/collections/NAME/`` holds the build of collection NAME
(``manifest.json``, ``checkpoints/``, ``outcomes/``, as `sharpbench collection export` writes it) that its results
were computed on. A rebuild on another machine is not bit-identical, so results can be verified or extended only on
this very build: `evaluate` (from where it finds the leaderboard), `leaderboard verify` and `leaderboard reproduce`
install it where the collection is not built, and all but a plain `evaluate` refuse a different local build. Every
result of a collection must come from one build (the models that rank intervals and paired differences resample
together are the same checkpoints only then)."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from sharpbench.collection.collection import Collection
from sharpbench.collection.files import MANIFEST
from sharpbench.collection.pull import pull_collection
from sharpbench.errors import CollectionError
from sharpbench.leaderboard.blocks import Block, Heading, Paragraph, Table
from sharpbench.leaderboard.results import LeaderboardError

BUILDS = "collections"


def build_folder(root: Path, collection: str) -> Path:
    """Where the published build of `collection` lies under the leaderboard folder."""
    return Path(root) / BUILDS / collection


def published_sha256(root: Path, collection: str) -> str | None:
    """The sha256 of the published build's manifest.json, None when the leaderboard holds no build of it."""
    path = build_folder(root, collection) / MANIFEST
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def install_published(collection: Collection, root: Path) -> bool:
    """Pull the published build into `collection`'s folder when it is not built here (True when it pulled); a local
    build that is not the published one is an error naming both fixes."""
    name, published = collection.spec.name, published_sha256(root, collection.spec.name)
    if published is None:
        return False
    folder = build_folder(root, name)
    if collection.read_manifest() is None:
        pull_collection(collection, str(folder), published)
        collection.forget()
        return True
    if collection.is_built() and collection.manifest_sha256 != published:
        raise CollectionError(
            f"collection '{name}' built here (manifest sha256 {collection.manifest_sha256[:12]}) is not the build "
            f"its results were published on ({folder}, {published[:12]}); install that one with `sharpbench "
            f"collection pull {name} --from {folder}`, or remove {folder} to republish every result of '{name}' on "
            f"the build here")
    return False


def check_one_build(documents: list[dict[str, Any]], root: Path) -> None:
    """LeaderboardError when a collection's results come from more than one build, or from another build than the
    one published beside them."""
    builds: dict[str, Counter[str]] = defaultdict(Counter)
    for document in documents:
        builds[document["collection"]][document["provenance"]["manifest_sha256"]] += 1
    for collection, counts in sorted(builds.items()):
        if len(counts) > 1:
            found = ", ".join(f"{n} on {sha[:12]}" for sha, n in counts.most_common())
            raise LeaderboardError(f"the results of collection '{collection}' come from {len(counts)} builds "
                                   f"({found}): republish them on one build (`sharpbench leaderboard reproduce "
                                   f"--collection {collection}`).")
        published = published_sha256(root, collection)
        if published is not None and published not in counts:
            raise LeaderboardError(f"the results of collection '{collection}' were computed on build "
                                   f"{next(iter(counts))[:12]}, but {build_folder(root, collection)} holds build "
                                   f"{published[:12]}: export the build they came from (`sharpbench collection "
                                   f"export {collection} --to {build_folder(root, collection)}`) or republish them.")


def builds_blocks(documents: list[dict[str, Any]], root: Path) -> list[Block]:
    """The Builds section: for each collection, the build its results come from and where to get it."""
    rows = []
    for collection in sorted({document["collection"] for document in documents}):
        sha = next(d["provenance"]["manifest_sha256"] for d in documents if d["collection"] == collection)
        kept = published_sha256(root, collection) is not None
        where = (f"`{BUILDS}/{collection}/`: `sharpbench collection pull {collection} --from "
                 f"leaderboard/{BUILDS}/{collection}`" if kept else
                 "not kept: these results can be recomputed on a new build, not verified")
        rows.append([collection, sha[:12], where])
    return [Heading(2, "Builds", "builds"),
            Paragraph("The build (manifest sha256) every result of a collection was computed on, and where to get "
                      "it. A rebuild on another machine is not bit-identical (floating-point arithmetic differs by "
                      "instruction set), so only the published build reproduces the values exactly; `sharpbench "
                      "leaderboard verify` and `reproduce` install it where the collection is not built."),
            Table(["collection", "build", "checkpoints"], rows)]
