"""`sharpbench collection import DIR`: turn a folder of checkpoints trained elsewhere into a collection.

DIR holds ``card.yaml`` (a collection card with ``imported: true``: name, description, dataset, ood_shifts,
architecture, sharpness_data; no grid, seeds, training or convergence) and ``models.csv`` (one row per model:
see :class:`sharpbench.collection.sources.ImportedTable`). The card is installed into
``$SHARPBENCH_HOME/imported/collections/``, where card discovery finds it, and the models enter the collection
through the builder like any other source's: each checkpoint is loaded strictly into the card's architecture and
copied with its sha256 into the manifest. A card's name must not be registered already (built-in or on an include
path); an imported name may be imported again. The collection is built beside the old one and swapped in by renames
only once every row has loaded, so a failed import leaves the previous one intact. Importing scores nothing;
`sharpbench collection build NAME` then adds each model's per-example outcomes on the card's dataset.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping

import torch

from sharpbench.cards.discovery import Registry
from sharpbench.cards.include import INCLUDE, read_card
from sharpbench.collection.builder import Builder
from sharpbench.collection.collection import Collection, open_collection
from sharpbench.collection.sources import ImportedTable
from sharpbench.collection.spec import CollectionSpec, load_collection_spec
from sharpbench.data.locate import DataPaths
from sharpbench.errors import CardError, CollectionError
from sharpbench.paths import sharpbench_home

CARD = "card.yaml"
IMPORTED = "imported"


def import_collection(folder: Path | str, home: Path | None = None, paths: DataPaths | None = None,
                      registered: Mapping[str, CollectionSpec] | None = None) -> Collection:
    """Validate DIR (card, table, every checkpoint), copy it into the collection folder and write its manifest.

    ``registered``: the collection cards already known by name (default: those discovered without include paths);
    a name among them that is not an earlier import of this home is refused before anything is written."""
    folder = Path(folder).expanduser()
    card_path = folder / CARD
    if not card_path.is_file():
        raise CollectionError(f"{folder} has no {CARD}: write a collection card with `imported: true` (dataset, "
                              f"ood_shifts, architecture, sharpness_data) there; see sharpbench/collection/importer.py")
    spec = load_collection_spec(card_path)
    if not spec.imported:
        raise CardError(card_path, "imported", "true (a card of checkpoints trained elsewhere)", False)
    bases = read_card(card_path).get(INCLUDE)
    if bases is not None:
        raise CardError(card_path, INCLUDE, f"no bases in an imported card (it is copied alone into {IMPORTED}/): "
                                            f"write the fields of its bases into it", bases)
    home = Path(home if home is not None else sharpbench_home())
    installed_card = home / IMPORTED / "collections" / f"{spec.name}.yaml"
    _check_name_free(spec, installed_card, registered)
    paths = paths or DataPaths.from_env()
    ImportedTable(spec, paths, folder).points()         # the table is checked before anything is installed
    installed_card.parent.mkdir(parents=True, exist_ok=True)
    root = open_collection(spec, home, paths).root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}.import-", dir=root.parent))
    try:
        staged_card = staging / installed_card.name     # the manifest names the card as installed: NAME.yaml
        shutil.copyfile(card_path, staged_card)
        staged = Collection(load_collection_spec(staged_card), staging / "collection", paths)
        Builder(staged, ImportedTable(staged.spec, paths, folder), torch.device("cpu"), 1, False).run(
            force=True, score=False)
        _swap(staged.root, root)
        os.replace(staged_card, installed_card)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return open_collection(load_collection_spec(installed_card), home, paths)


def _check_name_free(spec: CollectionSpec, installed_card: Path, registered: Mapping[str, CollectionSpec] | None
                     ) -> None:
    """Refuse a name that a built-in or included card already has (an earlier import of it may be replaced)."""
    if registered is None:
        registered = Registry.discover().collections
    taken = registered.get(spec.name)
    if taken is not None and taken.path.resolve() != installed_card.resolve():
        raise CollectionError(f"cannot import {spec.name!r}: that name is already the collection card {taken.path}; "
                              f"give `name:` in {spec.path} a name of its own")


def _swap(new: Path, root: Path) -> None:
    """Put the collection folder ``new`` at ``root`` by renames; the old folder, if any, is removed after."""
    if not root.exists():
        os.replace(new, root)
        return
    old = new.parent / "previous"
    os.replace(root, old)
    try:
        os.replace(new, root)
    except OSError:
        os.replace(old, root)
        raise
    shutil.rmtree(old, ignore_errors=True)
