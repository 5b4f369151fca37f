"""`sharpbench collection import DIR`: turn a folder of checkpoints trained elsewhere into a collection.

DIR holds ``card.yaml`` (a collection card with ``imported: true``: name, description, dataset, ood_shifts,
architecture, sharpness_data; no grid, seeds, training or convergence) and ``models.csv`` (one row per model:
see :class:`sharpbench.collection.sources.ImportedTable`). The card is installed into
``$SHARPBENCH_HOME/imported/collections/``, where card discovery finds it, and the models enter the collection
through the builder like any other source's: each checkpoint is loaded strictly into the card's architecture and
copied with its sha256 into the manifest. Importing scores nothing; `sharpbench collection build NAME` then adds
each model's per-example outcomes on the card's dataset.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from sharpbench.cards.include import INCLUDE, read_card
from sharpbench.collection.builder import Builder
from sharpbench.collection.collection import Collection, open_collection
from sharpbench.collection.sources import ImportedTable
from sharpbench.collection.spec import load_collection_spec
from sharpbench.data.locate import DataPaths
from sharpbench.errors import CardError, CollectionError
from sharpbench.paths import sharpbench_home

CARD = "card.yaml"
IMPORTED = "imported"


def import_collection(folder: Path | str, home: Path | None = None, paths: DataPaths | None = None) -> Collection:
    """Validate DIR (card, table, every checkpoint), copy it into the collection folder and write its manifest."""
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
    paths = paths or DataPaths.from_env()
    ImportedTable(spec, paths, folder).points()         # the table is checked before anything is installed
    home = Path(home if home is not None else sharpbench_home())
    installed_card = home / IMPORTED / "collections" / f"{spec.name}.yaml"
    installed_card.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(card_path, installed_card)
    spec = load_collection_spec(installed_card)
    collection = open_collection(spec, home, paths)
    Builder(collection, ImportedTable(spec, paths, folder), torch.device("cpu"), 1, False).run(force=True, score=False)
    return collection
