"""`collection pull` (every sha256 verified; a flipped byte names the file) and `collection import`."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sharpbench.collection.builder import build_collection
from sharpbench.cli.main import main
from sharpbench.collection.collection import Collection, open_collection
from sharpbench.collection.spec import load_collection_spec
from sharpbench.errors import CollectionError
from sharpbench.collection.importer import import_collection
from sharpbench.models.registry import build_model
from sharpbench.collection.pull import pull_collection
from sharpbench.cards.discovery import Registry
from tiny_cards import tiny_mlp_card

TINY = tiny_mlp_card("tiny-pull", epochs=2)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Collection]:
    """A built collection whose folder plays the published copy, and the cards folder (--include-path)."""
    root = tmp_path_factory.mktemp("published")
    (root / "cards" / "collections").mkdir(parents=True)
    card = root / "cards" / "collections" / "tiny-pull.yaml"
    card.write_text(yaml.safe_dump(TINY, sort_keys=False), encoding="utf-8")
    collection = open_collection(load_collection_spec(card), home=root / "home")
    build_collection(collection, progress=False)
    return root / "cards", collection


def _copy(source: Collection, folder: Path) -> Path:
    shutil.copytree(source.root, folder, ignore=shutil.ignore_patterns("records", ".build.lock"))
    return folder


def test_pull_from_a_folder_installs_verified_copies(published, tmp_path: Path):
    cards, source = published
    target = open_collection(source.spec, home=tmp_path / "home")
    assert pull_collection(target, str(source.root)) == 3 * len(source.models)   # weights, initial weights, outcomes
    assert target.is_built() and target.has_outcomes
    assert [(r.id, r.sha256) for r in target.models] == [(r.id, r.sha256) for r in source.models]
    for name, kinds in source.outcome_sets().items():
        for kind, values in kinds.items():
            assert np.array_equal(target.outcome_sets()[name][kind], values)
    for record in target.models:
        assert torch.equal(next(target.load_model(record).parameters()), next(source.load_model(record).parameters()))
    assert pull_collection(target, str(source.root)) == 0                     # resumes: nothing fetched twice


def test_pull_from_a_file_url(published, tmp_path: Path):
    _, source = published
    target = open_collection(source.spec, home=tmp_path / "home")
    pull_collection(target, source.root.as_uri(), manifest_sha256=source.manifest_sha256)
    assert target.manifest_sha256 == source.manifest_sha256


def test_flipped_byte_is_an_error_naming_the_file(published, tmp_path: Path):
    _, source = published
    mirror = _copy(source, tmp_path / "mirror")
    victim = mirror / source.models[2].outcomes_file
    blob = bytearray(victim.read_bytes())
    blob[len(blob) // 3] ^= 0x10
    victim.write_bytes(bytes(blob))
    target = open_collection(source.spec, home=tmp_path / "home")
    with pytest.raises(CollectionError) as caught:
        pull_collection(target, str(mirror))
    assert str(victim) in str(caught.value) and "integrity" in str(caught.value)
    assert not target.is_built() and not (target.root / source.models[2].outcomes_file).exists()


def test_cli_pull_reports_a_flipped_byte(published, tmp_path: Path, capsys: pytest.CaptureFixture):
    cards, source = published
    mirror = _copy(source, tmp_path / "mirror")
    victim = mirror / source.models[0].file
    blob = bytearray(victim.read_bytes())
    blob[-1] ^= 0x01
    victim.write_bytes(bytes(blob))
    assert main(["collection", "pull", "tiny-pull", "--from", str(mirror), "--include-path", str(cards)]) == 2
    assert str(victim) in capsys.readouterr().err
    assert main(["collection", "pull", "tiny-pull", "--from", str(source.root), "--include-path", str(cards)]) == 0


def test_pull_refuses_another_card_or_manifest(published, tmp_path: Path):
    _, source = published
    other = tmp_path / "cards" / "tiny-pull.yaml"
    other.parent.mkdir()
    other.write_text(yaml.safe_dump({**TINY, "description": "changed"}, sort_keys=False), encoding="utf-8")
    with pytest.raises(CollectionError, match="another version of the card"):
        pull_collection(open_collection(load_collection_spec(other), home=tmp_path / "a"), str(source.root))
    with pytest.raises(CollectionError, match="--manifest-sha256"):
        pull_collection(open_collection(source.spec, home=tmp_path / "b"), str(source.root), manifest_sha256="00" * 32)
    with pytest.raises(CollectionError, match="cannot read"):
        pull_collection(open_collection(source.spec, home=tmp_path / "c"), str(tmp_path / "nowhere"))


def test_pull_refuses_paths_outside_the_collection(published, tmp_path: Path):
    _, source = published
    mirror = _copy(source, tmp_path / "mirror")
    manifest = json.loads((mirror / "manifest.json").read_text())
    manifest["models"][0]["file"] = "../../escape.safetensors"
    (mirror / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CollectionError, match="refusing"):
        pull_collection(open_collection(source.spec, home=tmp_path / "home"), str(mirror))
    assert not (tmp_path / "escape.safetensors").exists()


# ------------------------------------------------------------------------------------------------- import

IMPORT_CARD = {
    "name": "my-mlps",
    "description": "three MLPs trained elsewhere",
    "imported": True,
    "dataset": {"name": "digits", "test_fraction": 0.3333333333333333, "split_seed": 0},
    "ood_shifts": [{"name": "noise", "kind": "gaussian_noise", "params": {"std": 0.3, "seed": 0}}],
    "architecture": {"kind": "mlp", "depth": 1},
    "sharpness_data": {"n": 64, "m": 32, "seed": 0},
}


def _user_folder(folder: Path, widths=(4, 8, 8)) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "card.yaml").write_text(yaml.safe_dump(IMPORT_CARD, sort_keys=False), encoding="utf-8")
    rows = []
    for i, width in enumerate(widths):
        torch.manual_seed(i)
        model = build_model({"kind": "mlp", "in_features": 64, "num_classes": 10, "depth": 1, "width": width})
        save_file(model.state_dict(), str(folder / f"model{i}.safetensors"))
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.5)
        save_file(model.state_dict(), str(folder / f"init{i}.safetensors"))
        rows.append({"id": f"run-{i}", "file": f"model{i}.safetensors", "init_file": f"init{i}.safetensors",
                     "width": width, "lr": 0.1 * (i + 1), "optimizer": "adam", "train_error": 0.01 * i,
                     "test_error": 0.1 + 0.01 * i, "test_loss": 0.5, "ood_error/noise": 0.3 - 0.01 * i})
    with open(folder / "models.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_import_makes_an_evaluable_collection(tmp_path: Path, sharpbench_home: Path, capsys: pytest.CaptureFixture):
    folder = _user_folder(tmp_path / "mine")
    collection = import_collection(folder)
    assert [r.id for r in collection.models] == ["run-0", "run-1", "run-2"]
    first = collection.models[0]
    assert first.hparams == {"width": 4, "lr": 0.1, "optimizer": "adam"}
    assert first.test_error == 0.1 and first.ood_error == {"noise": 0.3} and first.test_loss == 0.5
    assert first.sha256 == hashlib.sha256((folder / "model0.safetensors").read_bytes()).hexdigest()
    model = collection.load_model(first)
    assert model[0].weight.shape == (4, 64)                               # the width column sets the architecture
    initial = collection.load_initial_state(first)
    assert torch.allclose(initial["0.weight"] * 2, model[0].weight)
    assert "my-mlps" in Registry.discover().collections                   # found without --include-path
    assert main(["evaluate", "--measure", "param-norm", "--collection", "my-mlps", "--no-progress"]) == 0
    assert "my-mlps: 3 models" in capsys.readouterr().out
    assert not collection.has_outcomes                                    # import copies; it does not score
    assert main(["collection", "build", "my-mlps"]) == 0                  # nothing to train: scores each checkpoint
    scored = open_collection(collection.spec)
    sets = scored.outcome_sets()
    for row, (record, before) in enumerate(zip(scored.models, collection.models)):
        assert record.sha256 == before.sha256
        assert record.test_error == float(sets["test"]["error"][row].mean(dtype=np.float64))
        assert record.ood_loss["noise"] == float(sets["ood/noise"]["loss"][row].mean(dtype=np.float64))
    manifest = json.loads(scored.manifest_path.read_text())
    assert manifest["models"][0]["reported"] == {"train_error": 0.0, "train_loss": None, "test_error": 0.1,
                                                 "test_loss": 0.5, "ood_error": {"noise": 0.3},
                                                 "ood_loss": {"noise": None}}


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda f: (f / "models.csv").write_text((f / "models.csv").read_text().replace("ood_error/noise", "ood")),
         "ood_error/noise"),
        (lambda f: (f / "model1.safetensors").write_bytes(b"not a checkpoint"), "model1.safetensors"),
        (lambda f: (f / "models.csv").write_text((f / "models.csv").read_text().replace(",4,", ",5,", 1)),
         "line 2"),
        (lambda f: (f / "card.yaml").unlink(), "card.yaml"),
    ],
)
def test_import_errors_name_the_problem(tmp_path: Path, spoil, message: str):
    folder = _user_folder(tmp_path / "mine")
    spoil(folder)
    with pytest.raises(CollectionError, match=message.replace("/", ".")):
        import_collection(folder)


def _rewrite_table(folder: Path, old: str, new: str, count: int = 1) -> None:
    table = folder / "models.csv"
    table.write_text(table.read_text().replace(old, new, count))


def test_import_of_a_builtin_name_is_refused_before_anything_is_written(tmp_path: Path, sharpbench_home: Path,
                                                                       capsys: pytest.CaptureFixture):
    folder = _user_folder(tmp_path / "mine")
    card = yaml.safe_load((folder / "card.yaml").read_text())
    (folder / "card.yaml").write_text(yaml.safe_dump({**card, "name": "digits-mlp"}, sort_keys=False))
    assert main(["collection", "import", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "cannot import 'digits-mlp': that name is already the collection card" in err
    assert list(sharpbench_home.glob("*")) == []
    assert main(["list", "collections"]) == 0                            # nothing was left to break later commands


def test_import_of_a_name_from_an_include_path_is_refused(tmp_path: Path, sharpbench_home: Path,
                                                          capsys: pytest.CaptureFixture):
    folder = _user_folder(tmp_path / "mine")
    (tmp_path / "cards" / "collections").mkdir(parents=True)
    (tmp_path / "cards" / "collections" / "my-mlps.yaml").write_text(
        yaml.safe_dump(tiny_mlp_card("my-mlps", epochs=2), sort_keys=False))
    assert main(["collection", "import", str(folder), "--include-path", str(tmp_path / "cards")]) == 2
    assert "that name is already the collection card" in capsys.readouterr().err
    assert list(sharpbench_home.glob("*")) == []


def test_a_failed_reimport_keeps_the_previous_import(tmp_path: Path, sharpbench_home: Path):
    folder = _user_folder(tmp_path / "mine")
    first = import_collection(folder)
    card_bytes = (sharpbench_home / "imported" / "collections" / "my-mlps.yaml").read_bytes()
    again = import_collection(folder)                                     # the same imported name: allowed
    assert [r.sha256 for r in again.models] == [r.sha256 for r in first.models]
    (folder / "card.yaml").write_text((folder / "card.yaml").read_text().replace("three MLPs", "3 MLPs"))
    (folder / "model2.safetensors").write_bytes(b"not a checkpoint")     # the last row fails
    with pytest.raises(CollectionError, match="model2.safetensors"):
        import_collection(folder)
    assert (sharpbench_home / "imported" / "collections" / "my-mlps.yaml").read_bytes() == card_bytes
    kept = open_collection(Registry.discover().collection("my-mlps"))
    assert [r.sha256 for r in kept.models] == [r.sha256 for r in first.models]
    kept.load_model(kept.models[2])                                       # its files are still there
    assert sorted(p.name for p in (sharpbench_home / "collections").iterdir()) == ["my-mlps"]


def test_a_byte_order_mark_does_not_rename_the_first_column(tmp_path: Path, sharpbench_home: Path):
    folder = _user_folder(tmp_path / "mine")
    table = folder / "models.csv"
    table.write_bytes(b"\xef\xbb\xbf" + table.read_text().replace(",file,", ", file ,", 1).encode())
    collection = import_collection(folder)
    assert [r.id for r in collection.models] == ["run-0", "run-1", "run-2"]
    assert "id" not in collection.models[0].hparams


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "../outside.safetensors"])
def test_a_checkpoint_path_outside_the_folder_is_refused(tmp_path: Path, sharpbench_home: Path, path: str):
    folder = _user_folder(tmp_path / "mine")
    shutil.copyfile(folder / "model1.safetensors", tmp_path / "outside.safetensors")
    _rewrite_table(folder, "model1.safetensors", path)
    with pytest.raises(CollectionError, match=rf"line 3: checkpoint path '{re.escape(path)}' leads outside .*mine"):
        import_collection(folder)


@pytest.mark.parametrize("column,old,new,line", [("test_error", ",0.11,", ",11.0,", 3),
                                                 ("train_error", ",0.02,", ",-0.02,", 4),
                                                 ("ood_error/noise", ",0.29", ",1.29", 3)])
def test_a_classification_error_outside_0_1_is_refused(tmp_path: Path, sharpbench_home: Path, column: str, old: str,
                                                       new: str, line: int):
    folder = _user_folder(tmp_path / "mine")
    _rewrite_table(folder, old, new)
    with pytest.raises(CollectionError, match=rf"line {line}: column '{column}' holds .*a classification error is a "
                                              rf"fraction in \[0, 1\]"):
        import_collection(folder)


def test_export_writes_what_pull_installs_and_only_that(published, tmp_path: Path, capsys: pytest.CaptureFixture):
    cards, source = published
    folder = tmp_path / "published"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "of-another-build.safetensors").write_bytes(b"old")    # removed: not this build's
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHARPBENCH_HOME", str(source.root.parent.parent))
        assert main(["collection", "export", "tiny-pull", "--to", str(folder), "--include-path", str(cards)]) == 0
    assert (f"tiny-pull: {len(source.models)} models exported to {folder} ({3 * len(source.models)} files written)"
            in capsys.readouterr().out)
    names = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert names == {"manifest.json"} | {f for record in source.models for f, _ in _files(source, record.id)}
    assert (folder / "manifest.json").read_bytes() == source.manifest_path.read_bytes()
    target = open_collection(source.spec, home=tmp_path / "home")
    assert pull_collection(target, str(folder), source.manifest_sha256) == 3 * len(source.models)
    assert [(r.id, r.sha256) for r in target.models] == [(r.id, r.sha256) for r in source.models]


def _files(collection: Collection, model_id: str) -> list[tuple[str, str]]:
    from sharpbench.collection.files import model_files

    entry = next(e for e in collection.manifest["models"] if e["id"] == model_id)
    return model_files(entry)


def test_export_of_a_damaged_build_stops_naming_the_file_and_writes_no_manifest(published, tmp_path: Path):
    from sharpbench.collection.export import export_collection

    _, source = published
    damaged = open_collection(source.spec, home=tmp_path / "home")
    _copy(source, damaged.root)
    victim = damaged.root / source.models[1].file
    blob = bytearray(victim.read_bytes())
    blob[-1] ^= 1
    victim.write_bytes(bytes(blob))
    folder = tmp_path / "published"
    with pytest.raises(CollectionError, match=f"{victim} fails its integrity check"):
        export_collection(damaged, folder)
    assert not (folder / "manifest.json").exists()
