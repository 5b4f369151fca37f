"""The manifest's one reader and writer (its JSON Schema), the model sources' protocol, and DataPaths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from sharpbench.collection.builder import build_collection
from sharpbench.collection.collection import Collection, open_collection
from sharpbench.collection.files import model_files
from sharpbench.collection.manifest import manifest_bytes, parse_manifest
from sharpbench.collection.sources import GridTraining, Produced, source_for
from sharpbench.collection.spec import load_collection_spec
from sharpbench.data.locate import DataPaths
from sharpbench.errors import CollectionError
from sharpbench.models.registry import build_model
from legacy import strip_outcomes
from tiny_cards import NOISE, tiny_mlp_card

TINY = tiny_mlp_card("tiny-manifest", epochs=1, shifts=[NOISE])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Collection:
    root = tmp_path_factory.mktemp("manifest")
    (root / "cards").mkdir()
    (root / "cards" / "card.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False), encoding="utf-8")
    collection = open_collection(load_collection_spec(root / "cards" / "card.yaml"), home=root / "home")
    return build_collection(collection, progress=False)


def test_a_built_manifest_is_written_and_read_through_the_schema(built: Collection):
    raw = built.manifest_path.read_bytes()
    assert parse_manifest(raw, "here", "fix") == json.loads(raw)
    assert manifest_bytes(json.loads(raw)) == raw          # the writer reproduces what the builder wrote, byte for byte


@pytest.mark.parametrize("damage, field", [
    (lambda m: m["models"][0].pop("sha256"), "models/0"),
    (lambda m: m["models"][0].update(sha256="not a hash"), "models/0/sha256"),
    (lambda m: m["models"][0].update(test_error="0.1"), "models/0/test_error"),
    (lambda m: m["models"][0].update(stray=1), "models/0"),
    (lambda m: m.pop("card_sha256"), "<top level>"),
])
def test_a_damaged_manifest_names_the_field_and_the_fix(built: Collection, tmp_path: Path, damage, field: str):
    copy = Collection(built.spec, tmp_path / "copy")
    shutil.copytree(built.root, copy.root)
    manifest = json.loads(copy.manifest_path.read_text())
    damage(manifest)
    copy.manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CollectionError, match=f"field '{field}'.*from scratch"):
        copy.models  # noqa: B018
    assert not copy.is_built()


def test_a_format_1_manifest_still_reads(built: Collection, tmp_path: Path):
    copy = Collection(built.spec, tmp_path / "copy")
    shutil.copytree(built.root, copy.root)
    strip_outcomes(copy)
    assert [r.id for r in copy.models] == [r.id for r in built.models] and not copy.has_outcomes
    assert all(len(model_files(entry)) == 2 for entry in copy.manifest["models"])     # weights and initial weights


def test_any_source_enters_a_collection_through_the_builder(built: Collection, tmp_path: Path):
    """A source of one's own (here: the grid's points, each model replaced by zero weights) is saved the same way:
    checkpoint, outcomes, record, manifest; its models load and score as produced."""
    grid = GridTraining(built.spec)

    class Zeros:
        def points(self):
            return grid.points()[:2]

        def train_set(self, data, hparams, seed):
            return grid.train_set(data, hparams, seed)

        def produce(self, point, data, score):
            model = build_model(built.spec.architecture, point.hparams)
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.zero_()
            outcomes = score(model, data.evaluation_sets(self.train_set(data, point.hparams, point.seed)))
            train_error, train_loss = outcomes["train"].means()
            return Produced(model.state_dict(), None, outcomes=outcomes, train_error=train_error, train_loss=train_loss)

    collection = build_collection(Collection(built.spec, tmp_path / "zeros"), progress=False, source=Zeros())
    assert [r.id for r in collection.models] == [p.id for p in grid.points()[:2]]
    for record in collection.models:
        assert all(float(p.abs().sum()) == 0 for p in collection.load_model(record).parameters())
        assert record.init_file == "" and collection.load_initial_state(record) is None
        assert record.test_error == pytest.approx(collection.load_outcomes(record)["test"].error.double().mean())
    assert isinstance(source_for(built.spec, DataPaths()), GridTraining)


def test_data_paths_are_explicit_and_searched_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    first, second = tmp_path / "first", tmp_path / "second"
    for root in (first, second):
        (root / "set").mkdir(parents=True)
        (root / "set" / "a.bin").write_bytes(b"x")
    (second / "set" / "b.bin").write_bytes(b"y")
    paths = DataPaths.of(first, second)
    assert paths.find_dir("set", ["a.bin"]) == first / "set"
    assert paths.find_dir("set", ["a.bin", "b.bin"]) == second / "set"     # the first folder holding every file
    assert paths.find_dir("set", ["c.bin"]) is None
    assert paths.find_file("set/b.bin") == second / "set" / "b.bin"
    monkeypatch.setenv("SHARPBENCH_DATA", f"{second}:{first}")
    assert DataPaths.from_env() == DataPaths.of(second, first)
    monkeypatch.delenv("SHARPBENCH_DATA")
    assert DataPaths.from_env() == DataPaths()
    message = paths.not_found_message("set", ["c.bin"])
    assert str(first / "set") in message and "data folder" in message
