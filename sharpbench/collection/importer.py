"""`sharpbench collection import DIR`: turn a folder of checkpoints trained elsewhere into a collection.

DIR holds:
- ``card.yaml``: a collection card with ``imported: true`` (name, description, dataset, ood_shifts,
  architecture, sharpness_data; no grid, seeds, training or convergence);
- ``models.csv``: one row per model. Columns ``file`` and ``init_file`` (safetensors paths relative to
  DIR; the initial weights, e.g. the pretrained model before fine-tuning), ``train_error``,
  ``test_error`` and ``ood_error/SHIFT`` for each shift of the card; optional ``id``, ``train_loss``,
  ``test_loss`` and ``ood_loss/SHIFT``; every other column is a hyperparameter (numbers are read as
  numbers; a column named after an architecture field sets that field for the row's model).

Every checkpoint is loaded strictly into the card's architecture before anything is written, so a
collection that imports is one that evaluates. The files are copied into the collection folder with
their sha256 in the manifest, and the card into ``$SHARPBENCH_HOME/imported/collections/``, where the
registry finds it. Importing scores nothing; `sharpbench collection build NAME` then adds each model's
per-example outcomes on the card's dataset (:meth:`sharpbench.collection.collection.Collection.build`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from sharpbench.cards.include import INCLUDE, read_card
from sharpbench.collection.collection import CHECKPOINTS, MANIFEST_FORMAT, Collection, atomic_write, open_collection
from sharpbench.collection.spec import model_id_for, load_collection_spec
from sharpbench.errors import CardError, CollectionError
from sharpbench.jsonsafe import finite_or_none
from sharpbench.models.registry import build_model
from sharpbench.paths import sharpbench_home
from sharpbench.version import __version__

CARD = "card.yaml"
TABLE = "models.csv"
IMPORTED = "imported"
_REQUIRED = ("file", "init_file", "train_error", "test_error")


def _number(text: str) -> Any:
    """A CSV cell as int, float or (when neither) the text itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _metric(row: dict[str, str], column: str, where: str, required: bool) -> float | None:
    text = (row.get(column) or "").strip()
    if not text:
        if required:
            raise CollectionError(f"{where}: column '{column}' is empty; give the model's {column.replace('_', ' ')}")
        return None
    try:
        value = float(text)
    except ValueError:
        raise CollectionError(f"{where}: column '{column}' holds {text!r}, not a number") from None
    if not math.isfinite(value):
        raise CollectionError(f"{where}: column '{column}' holds {text!r}, not a finite number")
    return value


def _checkpoint(folder: Path, relative: str, where: str) -> tuple[Path, dict[str, torch.Tensor]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = (folder / relative).resolve()
    if not path.is_file():
        raise CollectionError(f"{where}: checkpoint {path} does not exist")
    try:
        return path, load_file(str(path))
    except (SafetensorError, ValueError, OSError) as error:
        raise CollectionError(f"{where}: {path} is not a safetensors file ({error}); convert a torch state dict "
                              f"with safetensors.torch.save_file(model.state_dict(), PATH)") from None


def import_collection(folder: Path | str, home: Path | None = None) -> Collection:
    """Validate DIR (card, table, every checkpoint), copy it into the collection folder and write its manifest."""
    folder = Path(folder).expanduser()
    card_path = folder / CARD
    if not card_path.is_file():
        raise CollectionError(f"{folder} has no {CARD}: write a collection card with `imported: true` (dataset, "
                              f"ood_shifts, architecture, sharpness_data) there; see `sharpbench/importer.py`")
    spec = load_collection_spec(card_path)
    if not spec.imported:
        raise CardError(card_path, "imported", "true (a card of checkpoints trained elsewhere)", False)
    bases = read_card(card_path).get(INCLUDE)
    if bases is not None:
        raise CardError(card_path, INCLUDE, f"no bases in an imported card (it is copied alone into {IMPORTED}/): "
                                            f"write the fields of its bases into it", bases)
    table = folder / TABLE
    try:
        with open(table, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise CollectionError(f"cannot read {table} ({error.strerror}): it lists the models, one row each, with "
                              f"columns {', '.join(_REQUIRED)} and ood_error/SHIFT per shift") from None
    if not rows:
        raise CollectionError(f"{table} lists no models")
    columns = list(rows[0])
    needed = list(_REQUIRED) + [f"ood_error/{shift.name}" for shift in spec.shifts]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise CollectionError(f"{table} lacks the columns {missing} (it has {columns})")
    metric_columns = set(needed) | {"id", "train_loss", "test_loss"} | {f"ood_loss/{s.name}" for s in spec.shifts}
    hparam_columns = [c for c in columns if c not in metric_columns]

    home = Path(home if home is not None else sharpbench_home())
    installed_card = home / IMPORTED / "collections" / f"{spec.name}.yaml"
    installed_card.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(card_path, installed_card)
    spec = load_collection_spec(installed_card)
    collection = open_collection(spec, home)
    shutil.rmtree(collection.root / CHECKPOINTS, ignore_errors=True)
    collection.manifest_path.unlink(missing_ok=True)

    models, ids = [], set()
    for number, row in enumerate(rows, start=2):
        where = f"{table} line {number}"
        hparams = {c: _number(row[c].strip()) for c in hparam_columns if (row.get(c) or "").strip()}
        model_id = re.sub(r"[^A-Za-z0-9._+-]", "_", row.get("id") or "") or model_id_for(len(models), hparams)
        if model_id in ids:
            raise CollectionError(f"{where}: id {model_id!r} is used twice")
        ids.add(model_id)
        entry: dict[str, Any] = {"id": model_id, "hparams": hparams, "seed": int(hparams.get("seed", 0))}
        for file_key, sha_key, suffix in (("file", "sha256", ""), ("init_file", "init_sha256", ".init")):
            source, state = _checkpoint(folder, row[file_key].strip(), where)
            try:
                model = build_model(spec.architecture, hparams)
            except ValueError as error:
                raise CollectionError(f"{where}: {error}: give it in the card's architecture or as a column of "
                                      f"{TABLE}") from None
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as error:
                raise CollectionError(f"{where}: {source} does not fit the card's architecture ({error})") from None
            relative = f"{CHECKPOINTS}/{model_id}{suffix}.safetensors"
            blob = source.read_bytes()
            atomic_write(collection.root / relative, blob)
            entry[file_key], entry[sha_key] = relative, hashlib.sha256(blob).hexdigest()
        entry["train_error"] = _metric(row, "train_error", where, True)
        entry["train_loss"] = _metric(row, "train_loss", where, False)
        entry["test_error"] = _metric(row, "test_error", where, True)
        entry["test_loss"] = _metric(row, "test_loss", where, False)
        entry["ood_error"] = {s.name: _metric(row, f"ood_error/{s.name}", where, True) for s in spec.shifts}
        entry["ood_loss"] = {s.name: _metric(row, f"ood_loss/{s.name}", where, False) for s in spec.shifts}
        models.append(entry)

    manifest = {
        "format": MANIFEST_FORMAT, "collection": spec.name, "description": spec.description,
        "card": installed_card.name, "card_sha256": spec.card_sha256, "sharpbench_version": __version__,
        "torch_version": torch.__version__, "imported_from": str(folder.resolve()),
        "dataset": spec.dataset, "shifts": [{"name": s.name, "kind": s.kind, "params": s.params} for s in spec.shifts],
        "architecture": spec.architecture, "loss": spec.loss,
        "models": models, "excluded": [],
    }
    atomic_write(collection.manifest_path, json.dumps(finite_or_none(manifest), indent=1, allow_nan=False).encode())
    return open_collection(spec, home)
