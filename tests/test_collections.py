"""Collections: card validation, build, resume, integrity, sharpness data, OOD shifts, convergence filter."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

import sharpbench.collection.sources as sources_module
from sharpbench.cli.main import render_error
from sharpbench.collection.builder import build_collection
from sharpbench.collection.collection import Collection, ModelRecord, open_collection
from sharpbench.collection.spec import load_collection_spec
from sharpbench.data.registry import SHIFTS, apply_shift, load_dataset
from sharpbench.errors import CardError, CollectionError
from sharpbench.models.registry import build_model
from tensor_scoring import errors_on
from tiny_cards import NOISE, tiny_mlp_card

REPO = Path(__file__).resolve().parents[1]

TINY = tiny_mlp_card("tiny-test", shifts=[NOISE, {"name": "contrast", "kind": "contrast",
                                                   "params": {"factor": 0.5}}])


def write_card(folder: Path, card: dict, name: str = "card.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(card, sort_keys=False), encoding="utf-8")
    return path


def with_changes(**changes) -> dict:
    card = json.loads(json.dumps(TINY))
    card.update(changes)
    return card


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Collection:
    """One built tiny collection shared by the read-only tests."""
    root = tmp_path_factory.mktemp("built")
    spec = load_collection_spec(write_card(root / "cards", TINY))
    collection = open_collection(spec, home=root / "home")
    build_collection(collection, progress=False)
    return collection


# ------------------------------------------------------------------------------------------ card validation


def test_bundled_card_is_valid_and_large_enough():
    spec = load_collection_spec(REPO / "registry" / "collections" / "digits-mlp.yaml")
    assert spec.name == "digits-mlp"
    assert spec.grid_size() >= 48
    assert {"learning_rate", "batch_size", "width", "weight_decay"} <= set(spec.grid)
    assert len(spec.shifts) >= 3
    assert spec.max_train_error == 0.01
    assert spec.sharpness_data == {"n": 1024, "m": 128, "seed": 0}
    assert len({p.id for p in spec.model_points()}) == spec.grid_size()


def test_tiny_fixture_card_is_valid(tiny_collection_card: Path):
    spec = load_collection_spec(tiny_collection_card / "collections" / "tiny-digits.yaml")
    assert spec.name == "tiny-digits"
    assert spec.grid_size() == 6


def test_spec_fields(tmp_path: Path):
    spec = load_collection_spec(write_card(tmp_path, TINY))
    assert spec.grid_size() == 4
    assert spec.architecture["in_features"] == 64 and spec.architecture["num_classes"] == 10
    assert spec.card_sha256 == hashlib.sha256((tmp_path / "card.yaml").read_bytes()).hexdigest()
    assert [s.name for s in spec.shifts] == ["noise", "contrast"]


@pytest.mark.parametrize(
    ("card", "field"),
    [
        ({k: v for k, v in TINY.items() if k != "seeds"}, "seeds"),                              # missing
        ({k: v for k, v in TINY.items() if k != "description"}, "description"),
        (with_changes(training={**TINY["training"], "epochs": "ten"}), "training.epochs"),        # wrong type
        (with_changes(seeds=[0, "one"]), "seeds[1]"),
        (with_changes(grid={"learning_rate": [0.1, "fast"], "width": [8]}), "grid.learning_rate[1]"),
        (with_changes(seed=[0]), "seed"),                                                         # unknown key
        (with_changes(dataset={**TINY["dataset"], "split_sed": 1}), "dataset.split_sed"),
        (with_changes(training={**TINY["training"], "epoch": 3}), "training.epoch"),
        (with_changes(grid={"learning_rate": [0.1], "widht": [8]}), "grid.widht"),
        (with_changes(ood_shifts=[{"name": "n", "kind": "frost", "params": {}}]), "ood_shifts[0].kind"),
        (with_changes(ood_shifts=[{"name": "n", "kind": "gaussian_noise", "params": {"std": 0.1}}]),
         "ood_shifts[0].params.seed"),
        (with_changes(dataset={"name": "imagenet-99"}), "dataset.name"),
        (with_changes(dataset={"name": ["digits"]}), "dataset.name"),
        (with_changes(architecture={"depth": 1}), "architecture.kind"),
        (with_changes(dataset={**TINY["dataset"], "test_fraction": 1.5}), "dataset.test_fraction"),
        (with_changes(architecture={"kind": "mlp", "depth": 1, "width": 8}), "grid.width"),      # both places
        (with_changes(architecture={"kind": "mlp", "depth": 1, "num_classes": 3}), "architecture.num_classes"),
        (with_changes(training={"optimizer": "sgd", "epochs": 3}), "training.batch_size"),      # nowhere
        (with_changes(sharpness_data={"n": 16, "m": 64, "seed": 0}), "sharpness_data.m"),
        (with_changes(convergence={"max_train_error": 2}), "convergence.max_train_error"),
        (with_changes(name="Tiny Test"), "name"),
    ],
)
def test_card_errors_name_file_and_field(tmp_path: Path, card: dict, field: str):
    path = write_card(tmp_path, card)
    with pytest.raises(CardError) as caught:
        load_collection_spec(path)
    assert caught.value.field == field
    assert caught.value.path == path
    assert str(path) in str(caught.value) and field in str(caught.value)


CHECKPOINTS = {k: v for k, v in TINY.items() if k not in ("grid", "seeds", "training", "convergence")}
CHECKPOINTS = {**CHECKPOINTS, "architecture": {"kind": "timm", "pretrained": True},
               "checkpoints": [{"id": "a", "hparams": {"model": "vit_tiny_patch16_224.augreg_in21k", "lr": 0.1}}]}


def _checkpoints(*entries: dict, **changes) -> dict:
    return {**CHECKPOINTS, "checkpoints": list(entries), **changes}


def test_checkpoint_card_names_models_instead_of_a_grid(tmp_path: Path):
    spec = load_collection_spec(write_card(tmp_path, _checkpoints(
        {"id": "a", "hparams": {"model": "vit_tiny_patch16_224.augreg_in21k", "lr": 0.1}},
        {"id": "b", "hparams": {"model": "vit_small_patch16_224.augreg_in21k", "lr": 0.2},
         "init": {"model": "vit_small_patch16_224"}})))
    assert not spec.trained and spec.grid_size() == 2 and spec.weight_fields == {"model"}
    assert [(p.id, p.hparams["lr"]) for p in spec.model_points()] == [("a", 0.1), ("b", 0.2)]
    assert spec.checkpoints[1].init == {"model": "vit_small_patch16_224"} and spec.checkpoints[0].init is None


@pytest.mark.parametrize(
    ("card", "field"),
    [
        (_checkpoints({"id": "a"}, {"id": "a"}), "checkpoints[1].id"),                            # twice
        (_checkpoints({"id": "A b"}), "checkpoints[0].id"),
        (_checkpoints({"id": "a", "hparams": {"model": 3}}), "checkpoints[0].hparams.model"),      # arch field type
        (_checkpoints({"id": "a", "hparams": {"lr": [0.1]}}), "checkpoints[0].hparams.lr"),
        (_checkpoints({"id": "a", "init": {"lr": 0.1}}), "checkpoints[0].init.lr"),               # not an arch field
        (_checkpoints({"id": "a", "hparams": {"pretrained": False}}), "checkpoints[0].hparams.pretrained"),
        (_checkpoints({"id": "a", "weights": "x"}), "checkpoints[0].weights"),                    # unknown key
        (_checkpoints("a"), "checkpoints[0]"),
        (_checkpoints({"id": "a"}, seeds=[0]), "seeds"),                                          # a trained card's
        (_checkpoints({"id": "a"}, imported=True), "checkpoints"),
        ({**TINY, "dataset": {"name": "imagenet", "mean": [0.5] * 3, "std": [0.5] * 3},
          "ood_shifts": []}, "dataset.name"),                                                   # streamed, trained
    ],
)
def test_checkpoint_card_errors_name_file_and_field(tmp_path: Path, card: dict, field: str):
    path = write_card(tmp_path, card)
    with pytest.raises(CardError) as caught:
        load_collection_spec(path)
    assert caught.value.field == field and str(path) in str(caught.value)


def test_yaml_exponent_without_dot_gets_a_hint(tmp_path: Path):
    path = tmp_path / "card.yaml"
    text = yaml.safe_dump(TINY, sort_keys=False).replace("learning_rate:\n  - 0.05", "learning_rate:\n  - 5e-2")
    assert "5e-2" in text
    path.write_text(text)
    with pytest.raises(CardError, match=r"1\.0e-4") as caught:
        load_collection_spec(path)
    assert caught.value.field == "grid.learning_rate[0]"


# ---------------------------------------------------------------------------------------------- building


def test_build_writes_verified_manifest(built: Collection):
    manifest = json.loads((built.root / "manifest.json").read_text())
    assert manifest["collection"] == "tiny-test"
    assert manifest["card_sha256"] == built.spec.card_sha256
    assert manifest["protocol"] == built.protocol()
    assert "sharpbench_version" in manifest and manifest["build_time_seconds"] > 0
    assert built.is_built()
    assert len(built.models) == 4 and built.excluded == []
    assert built.shifts == ["noise", "contrast"] and built.num_classes == 10
    for entry in manifest["models"]:
        assert hashlib.sha256((built.root / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
        assert hashlib.sha256((built.root / entry["init_file"]).read_bytes()).hexdigest() == entry["init_sha256"]
        assert entry["file"].endswith(".safetensors") and entry["init_file"].endswith(".safetensors")
        assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry["hparams"].values())
        assert set(entry["ood_error"]) == set(entry["ood_loss"]) == {"noise", "contrast"}
        for key in ("train_error", "train_loss", "test_error", "test_loss"):
            assert isinstance(entry[key], float)
    assert built.manifest_sha256 == hashlib.sha256((built.root / "manifest.json").read_bytes()).hexdigest()


def test_loaded_models_reproduce_their_recorded_errors(built: Collection):
    data = built.data()
    for record in built.models:
        model = built.load_model(record)
        assert not model.training
        assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
        assert errors_on(model, data.test.dataset.tensors[0], data.test.dataset.tensors[1]) == pytest.approx((record.test_error, record.test_loss))
        noise_error, _ = errors_on(model, data.ood["noise"].dataset.tensors[0], data.test.dataset.tensors[1])
        assert noise_error == pytest.approx(record.ood_error["noise"])
        initial = built.load_initial_state(record)
        final = model.state_dict()
        assert set(initial) == set(final)
        assert any(not torch.equal(initial[k], final[k]) for k in final)


def test_two_builds_are_identical(tmp_path: Path):
    spec = load_collection_spec(write_card(tmp_path / "cards", TINY))
    first = open_collection(spec, home=tmp_path / "home-a")
    second = open_collection(spec, home=tmp_path / "home-b")
    build_collection(first, progress=False)
    build_collection(second, progress=False)

    def summary(collection: Collection) -> list:
        return [(r.id, r.hparams, r.train_error, r.train_loss, r.test_error, r.test_loss, r.ood_error, r.sha256,
                 r.init_sha256) for r in collection.models]

    assert summary(first) == summary(second)


def test_interrupted_build_resumes_without_retraining(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spec = load_collection_spec(write_card(tmp_path / "cards", TINY))
    collection = open_collection(spec, home=tmp_path / "home")
    calls: list[dict] = []
    real_train = sources_module.train_model

    def counting_train(model, x, y, recipe, hparams, seed, *args):
        calls.append(dict(hparams))
        return real_train(model, x, y, recipe, hparams, seed, *args)

    monkeypatch.setattr(sources_module, "train_model", counting_train)
    build_collection(collection, progress=False)
    assert len(calls) == 4
    before = {r.id: r for r in collection.models}

    # simulate an interruption: one model's files and record, and the manifest, never got written
    victim = collection.models[2]
    (collection.root / victim.file).unlink()
    (collection.root / victim.init_file).unlink()
    (collection.root / "records" / f"{victim.id}.json").unlink()
    (collection.root / "manifest.json").unlink()
    others = {p: p.stat().st_mtime_ns for p in (collection.root / "records").glob("*.json")}
    assert not collection.is_built()

    calls.clear()
    collection = open_collection(spec, home=tmp_path / "home")
    build_collection(collection, progress=False)
    assert calls == [victim.hparams]
    assert {p: p.stat().st_mtime_ns for p in others} == others
    assert {r.id: r for r in collection.models} == before

    calls.clear()
    build_collection(collection, progress=False)        # complete: nothing to do
    assert calls == []

    # a record whose checkpoint went missing is retrained too
    (collection.root / collection.models[0].file).unlink()
    build_collection(collection, progress=False, force=False)
    assert calls == []                      # the manifest says built: build does nothing ...
    with pytest.raises(CollectionError, match="from scratch"):
        collection.load_model(collection.models[0])     # ... but loading names the fix
    build_collection(collection, progress=False, force=True)
    assert len(calls) == 4


def test_flipped_byte_is_caught_before_loading(tmp_path: Path):
    spec = load_collection_spec(write_card(tmp_path / "cards", TINY))
    collection = open_collection(spec, home=tmp_path / "home")
    build_collection(collection, progress=False)
    record = collection.models[1]
    for relative, load in ((record.file, collection.load_model), (record.init_file, collection.load_initial_state)):
        path = collection.root / relative
        blob = bytearray(path.read_bytes())
        blob[len(blob) // 2] ^= 0x01
        path.write_bytes(bytes(blob))
        with pytest.raises(CollectionError) as caught:
            load(record)
        message = str(caught.value)
        assert str(path) in message and "sharpbench collection build tiny-test --force" in render_error(caught.value)


def test_changed_card_needs_force(tmp_path: Path):
    path = write_card(tmp_path / "cards", TINY)
    build_collection(open_collection(load_collection_spec(path), home=tmp_path / "home"), progress=False)
    write_card(tmp_path / "cards", with_changes(description="changed"))
    collection = open_collection(load_collection_spec(path), home=tmp_path / "home")
    assert not collection.is_built()
    with pytest.raises(CollectionError, match="from scratch"):
        build_collection(collection, progress=False)
    build_collection(collection, progress=False, force=True)
    assert collection.is_built() and len(collection.models) == 4


def test_reading_an_unbuilt_collection_names_the_build_and_building_makes_it(tmp_path: Path, sharpbench_home: Path):
    spec = load_collection_spec(write_card(tmp_path / "cards", TINY))
    collection = open_collection(spec)
    assert collection.root == sharpbench_home / "collections" / "tiny-test"
    assert not collection.is_built()
    with pytest.raises(CollectionError, match="Build collection 'tiny-test'"):
        collection.models                   # reading never trains: it names the command that builds
    assert len(build_collection(collection).models) == 4
    assert collection.is_built()


def test_non_converged_models_are_excluded(tmp_path: Path):
    card = with_changes(convergence={"max_train_error": 0.2},
                        grid={"learning_rate": [0.0001, 0.1], "width": [32]},
                        training={**TINY["training"], "epochs": 6, "batch_size": 32})
    collection = open_collection(load_collection_spec(write_card(tmp_path / "cards", card)), home=tmp_path / "h")
    build_collection(collection, progress=False)
    excluded = collection.excluded
    assert [e["hparams"]["learning_rate"] for e in excluded] == [0.0001]
    assert excluded[0]["train_error"] > 0.2 and excluded[0]["id"].startswith("000-")
    assert [r.hparams["learning_rate"] for r in collection.models] == [0.1]
    assert not list((collection.root / "checkpoints").glob("000-*"))
    manifest = json.loads((collection.root / "manifest.json").read_text())
    assert manifest["excluded"] == excluded


# ---------------------------------------------------------------------------------------- sharpness data


def test_sharpness_batches_follow_the_protocol(built: Collection):
    batches = built.sharpness_batches()
    assert [len(x) for x, _ in batches] == [16, 16, 16, 16]
    again = open_collection(built.spec, home=built.root.parents[1]).sharpness_batches()
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(batches, again))
    assert all(x.shape[1] == 64 and x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in batches)

    uneven = built.sharpness_batches(n=70, m=16)
    assert [len(x) for x, _ in uneven] == [16, 16, 16, 16, 6]
    assert torch.equal(torch.cat([x for x, _ in uneven])[:64], torch.cat([x for x, _ in batches]))

    data = built.data()
    train_rows = {tuple(row.tolist()): int(label) for row, label in zip(data.train_tensors()[0], data.train_tensors()[1])}
    test_rows = {tuple(row.tolist()) for row in data.test.dataset.tensors[0]}
    points = [(tuple(row.tolist()), int(label)) for x, y in uneven for row, label in zip(x, y)]
    assert len(set(p for p, _ in points)) == len(points)              # distinct points, no repeats
    assert all(train_rows.get(p) == label for p, label in points)     # from the training split ...
    assert not any(p in test_rows and p not in train_rows for p, _ in points)

    everything = built.sharpness_batches(n=100000, m=500)
    assert sum(len(x) for x, _ in everything) == data.train_tensors()[0].shape[0]
    protocol = built.protocol(n=100000, m=500)
    assert protocol["n_used"] == data.train_tensors()[0].shape[0]
    assert protocol["n"] == 100000 and protocol["m"] == 500
    assert {"dataset", "split_seed", "subset_seed", "n_used"} <= set(built.protocol())
    json.dumps(protocol)


def test_dataset_is_scaled_and_split():
    x_train, y_train, x_test, y_test = load_dataset({"name": "digits", "test_fraction": 1 / 3, "split_seed": 0})
    assert x_train.shape == (1198, 64) and x_test.shape == (599, 64)
    assert float(x_train.min()) == 0.0 and float(x_train.max()) == 1.0
    assert set(y_train.tolist()) == set(range(10))
    again = load_dataset({"name": "digits", "test_fraction": 1 / 3, "split_seed": 0})
    assert torch.equal(again[0], x_train) and torch.equal(again[3], y_test)


# ------------------------------------------------------------------------------------------------ shifts

SHIFT_EXAMPLES = {
    "gaussian_noise": {"std": 0.3, "seed": 0},
    "translate": {"dx": 0.5, "dy": 0.0},
    "contrast": {"factor": 0.45},
    "pixel_dropout": {"rate": 0.2, "seed": 0},
    "blur": {"sigma": 0.7},
    "shot_noise": {"photons": 10.0, "seed": 0},
    "impulse_noise": {"amount": 0.1, "seed": 0},
    "brightness": {"delta": 0.3},
    "pixelate": {"size": 4},
    "fog": {"strength": 0.8, "seed": 0},
}


def test_every_shift_kind_has_an_example():
    # the shifts of one dataset are tested with it: tests/test_collection_nli.py, tests/test_collection_cifar.py
    assert set(SHIFT_EXAMPLES) | {"nli_overlap_swap", "cifar10_c"} == set(SHIFTS)


@pytest.mark.parametrize("kind", sorted(SHIFT_EXAMPLES))
def test_shifts_are_deterministic_and_change_inputs(kind: str):
    x = load_dataset({"name": "digits", "test_fraction": 1 / 3, "split_seed": 0})[2]
    original = x.clone()
    first = apply_shift(kind, x, SHIFT_EXAMPLES[kind], (1, 8, 8))
    second = apply_shift(kind, x, SHIFT_EXAMPLES[kind], (1, 8, 8))
    assert torch.equal(first, second)
    assert torch.equal(x, original)                     # the input is not modified
    assert first.shape == x.shape and first.dtype == x.dtype
    assert (first - x).abs().mean() > 0.01


def test_whole_pixel_translate_moves_columns_with_zero_fill():
    x = torch.arange(64, dtype=torch.float32).reshape(1, 64)
    moved = apply_shift("translate", x, {"dx": 1, "dy": 0}, (1, 8, 8)).reshape(8, 8)
    grid = x.reshape(8, 8)
    assert torch.equal(moved[:, 1:], grid[:, :-1]) and torch.equal(moved[:, 0], torch.zeros(8))
    up = apply_shift("translate", x, {"dx": 0, "dy": -2}, (1, 8, 8)).reshape(8, 8)
    assert torch.equal(up[:-2], grid[2:]) and torch.equal(up[-2:], torch.zeros(2, 8))


def test_collection_shifts_follow_the_card(built: Collection):
    data = built.data()
    assert list(data.ood) == ["noise", "contrast"]
    again = Collection(built.spec, built.root).data()
    for name in built.shifts:
        assert torch.equal(data.ood[name].dataset.tensors[0], again.ood[name].dataset.tensors[0])
        assert not torch.equal(data.ood[name].dataset.tensors[0], data.test.dataset.tensors[0])


def test_model_record_round_trip(built: Collection):
    record = built.models[0]
    assert ModelRecord.from_json(record.to_json()) == record
    assert record.gen_gap == pytest.approx(record.test_error - record.train_error)


def test_build_model_registry():
    model = build_model({"kind": "mlp", "in_features": 64, "num_classes": 10, "depth": 2}, {"width": 32,
                                                                                             "learning_rate": 0.1})
    assert [tuple(p.shape) for p in model.parameters()] == [(32, 64), (32,), (32, 32), (32,), (10, 32), (10,)]
    with pytest.raises(KeyError):
        build_model({"kind": "resnet-9000"}, {})


def test_tiny_fixture_card_builds(tiny_collection_card: Path, tmp_path: Path):
    spec = load_collection_spec(tiny_collection_card / "collections" / "tiny-digits.yaml")
    collection = open_collection(spec, home=tmp_path / "home")
    build_collection(collection, progress=False)
    assert len(collection.models) + len(collection.excluded) == 6
    assert len(collection.models) >= 4
    assert {hash(r) for r in collection.models} == {hash(r) for r in open_collection(spec, tmp_path / "home").models}
