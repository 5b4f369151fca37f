"""Per-example outcomes: written by every build, verified on load, and added to collections built before them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

import sharpbench.collection.builder as builder_module
import sharpbench.collection.sources as sources_module
from sharpbench.cli.main import render_error
from sharpbench.collection.builder import build_collection
from sharpbench.collection.collection import Collection, open_collection
from sharpbench.collection.spec import load_collection_spec
from sharpbench.errors import CollectionError
from sharpbench.evaluation.run import evaluate
from sharpbench.cards.discovery import Registry
from sharpbench.evaluation.store import ResultStore
from sharpbench.losses import LOSSES
from legacy import strip_outcomes
from tiny_cards import NOISE, tiny_mlp_card

TINY = tiny_mlp_card("tiny-outcomes", epochs=2,
                     shifts=[NOISE, {"name": "contrast", "kind": "contrast", "params": {"factor": 0.5}}])


def _spec(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "card.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False), encoding="utf-8")
    return load_collection_spec(folder / "card.yaml")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Collection:
    root = tmp_path_factory.mktemp("outcomes")
    collection = open_collection(_spec(root / "cards"), home=root / "home")
    build_collection(collection, progress=False)
    return collection


def test_outcomes_are_per_example_and_average_to_the_manifest(built: Collection):
    data = built.data()
    n_train, n_test = data.train_tensors()[0].shape[0], data.test.dataset.tensors[0].shape[0]
    assert built.has_outcomes
    assert built.set_sizes() == {"train": n_train, "test": n_test, "ood/noise": n_test, "ood/contrast": n_test}
    sets = built.outcome_sets()
    assert list(sets) == ["train", "test", "ood/noise", "ood/contrast"]
    for name, kinds in sets.items():
        for kind, values in kinds.items():
            assert values.shape == (len(built.models), built.set_sizes()[name]) and values.dtype == np.float32
        assert set(np.unique(kinds["error"])) <= {0.0, 1.0}
    for row, record in enumerate(built.models):
        mean = {name: tuple(float(kinds[kind][row].mean(dtype=np.float64)) for kind in ("error", "loss"))
                for name, kinds in sets.items()}
        assert mean["train"] == (record.train_error, record.train_loss)
        assert mean["test"] == (record.test_error, record.test_loss)
        assert {s: mean[f"ood/{s}"] for s in built.shifts} == {s: (record.ood_error[s], record.ood_loss[s])
                                                                for s in built.shifts}
        # an independent computation from the checkpoint: arg-max errors and cross-entropies, example by example
        model = built.load_model(record)
        for name, x in (("test", data.test.dataset.tensors[0]), ("ood/contrast", data.ood["contrast"].dataset.tensors[0])):
            with torch.no_grad():
                logits = model(x)
            np.testing.assert_array_equal(sets[name]["error"][row], (logits.argmax(1) != data.test.dataset.tensors[1]).float().numpy())
            np.testing.assert_allclose(sets[name]["loss"][row],
                                       F.cross_entropy(logits, data.test.dataset.tensors[1], reduction="none").numpy(), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_per_example_losses_average_to_the_training_loss(name: str):
    mean_loss, per_example, classification = LOSSES[name]
    torch.manual_seed(0)
    outputs = torch.randn(9, 3 if classification else 1)
    targets = torch.randint(0, 3, (9,)) if classification else torch.randn(9)
    losses = per_example(outputs, targets)
    assert losses.shape == (9,)
    assert torch.allclose(losses.mean(), mean_loss(outputs, targets))
    assert torch.allclose(losses[4], mean_loss(outputs[4:5], targets[4:5]))      # each is its example's loss


def test_outcome_files_are_verified(built: Collection, tmp_path: Path):
    copy = Collection(built.spec, tmp_path / "copy")
    shutil.copytree(built.root, copy.root)
    victim = copy.root / copy.models[1].outcomes_file
    blob = bytearray(victim.read_bytes())
    blob[-5] ^= 0x01
    victim.write_bytes(bytes(blob))
    with pytest.raises(CollectionError) as caught:
        copy.outcome_sets()
    assert str(victim) in str(caught.value) and "integrity" in str(caught.value) and "--force" in render_error(caught.value)

    shutil.copyfile(built.root / built.models[1].outcomes_file, victim)
    manifest = json.loads(copy.manifest_path.read_text())
    manifest["set_sizes"]["test"] += 1          # files that do not hold the sets the manifest sizes
    copy.manifest_path.write_text(json.dumps(manifest))
    copy = Collection(built.spec, copy.root)
    with pytest.raises(CollectionError, match="not the sets the manifest sizes"):
        copy.outcome_sets()


def _forbid_training(*args, **kwargs):
    raise AssertionError("adding outcomes must not train")


def test_old_collection_gains_outcomes_without_training_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spec = _spec(tmp_path / "cards")
    collection = open_collection(spec, home=tmp_path / "home")
    build_collection(collection, progress=False)
    manifest = json.loads(collection.manifest_path.read_text())
    records = {p.name: json.loads(p.read_text()) for p in (collection.root / "records").glob("*.json")}
    checkpoints = {p: p.read_bytes() for p in (collection.root / "checkpoints").iterdir()}

    strip_outcomes(collection)
    old = open_collection(spec, home=tmp_path / "home")
    # built before outcomes: loads and evaluates as before, and says how to add them
    assert old.is_built() and not old.has_outcomes
    assert [(r.id, r.test_error, r.outcomes_file) for r in old.models] == [(m["id"], m["test_error"], "")
                                                                           for m in manifest["models"]]
    store = ResultStore(tmp_path / "results.sqlite")
    result = evaluate(Registry.discover().measure("param-norm"), old, store, progress=False)
    assert set(result.values) == {r.id for r in old.models}
    with pytest.raises(CollectionError, match=f"Build collection '{spec.name}'"):
        old.outcome_sets()

    monkeypatch.setattr(sources_module, "train_model", _forbid_training)
    real_evaluate = builder_module.score_outcomes
    calls: list[int] = []
    per_model = 2 + len(spec.shifts)

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2 * per_model + 1:              # the third model's first set: the run stops there
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(builder_module, "score_outcomes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_collection(old, progress=False)
    partial = json.loads(old.manifest_path.read_text())
    assert [bool(m.get("outcomes_file")) for m in partial["models"]] == [True, True, False, False]
    assert not old.has_outcomes and open_collection(spec, home=tmp_path / "home").is_built()

    calls.clear()
    build_collection(old, progress=False)
    assert len(calls) == 2 * per_model                   # only the two models the interruption left
    assert json.loads(old.manifest_path.read_text()) == manifest    # the same outcome files, sha256s and errors
    assert {p.name: json.loads(p.read_text()) for p in (old.root / "records").glob("*.json")} == records
    assert {p: p.read_bytes() for p in (old.root / "checkpoints").iterdir()} == checkpoints
    assert old.has_outcomes and old.outcome_sets()["test"]["error"].shape[0] == 4
    calls.clear()
    build_collection(old, progress=False)
    assert calls == []                                   # complete: nothing to do


def test_errors_that_no_longer_reproduce_name_the_fix(built: Collection, tmp_path: Path):
    copy = Collection(built.spec, tmp_path / "copy")
    shutil.copytree(built.root, copy.root)
    strip_outcomes(copy)
    manifest = json.loads(copy.manifest_path.read_text())
    manifest["models"][0]["test_error"] += 1 / len(copy.data().test)     # one test example scored otherwise
    copy.manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CollectionError) as caught:
        build_collection(Collection(built.spec, copy.root), progress=False)
    message = str(caught.value)
    assert built.models[0].id in message and "test_error" in message and "from scratch" in message
    assert f"sharpbench collection build {built.spec.name} --force" in render_error(caught.value)
