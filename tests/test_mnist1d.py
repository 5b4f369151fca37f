"""MNIST-1D (sharpbench/data/mnist1d.py): the generator reproduces the mnist1d package's own make_dataset, sets are
cached with their sha256 and regenerated when the file is damaged, OOD sets drawn with other generator arguments
beside corruptions of the test set, and a card trained in groups builds the same bits twice and when resumed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from sharpbench.collection.builder import build_collection
from sharpbench.collection.collection import open_collection
from sharpbench.collection.spec import load_collection_spec
from sharpbench.data import mnist1d
from sharpbench.data.registry import load_splits
from sharpbench.errors import CardError

CARD = {
    "name": "tiny-mnist1d",
    "description": "twelve tiny MLPs on MNIST-1D, trained in groups",
    "dataset": {"name": "mnist1d", "num_train": 200, "num_test": 300, "seed": 0},
    "ood_shifts": [{"name": "noisier", "kind": "generator", "params": {"corr_noise_scale": 0.6, "seed": 7,
                                                                        "num_examples": 100}},
                   {"name": "noise", "kind": "gaussian_noise", "params": {"std": 0.5, "seed": 0, "clip": False}}],
    "architecture": {"kind": "mlp", "depth": 1, "dropout": 0.1},
    "grid": {"learning_rate": [0.05, 0.1, 0.2], "width": [8, 16]},
    "seeds": [0, 1],
    "training": {"optimizer": "sgd", "momentum": 0.9, "epochs": 3, "batch_size": 50, "group_size": 4},
    "convergence": {"max_train_error": 1.0},
    "sharpness_data": {"n": 64, "m": 16, "seed": 0},
}


def _card(folder: Path, card: dict = CARD) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{card['name']}.yaml"
    path.write_text(yaml.safe_dump(card, sort_keys=False), encoding="utf-8")
    return path


def test_the_generator_reproduces_the_packages_make_dataset():
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = 400, 5
    reference = make_dataset(args)
    x, y = mnist1d.generate(mnist1d.generator_args({}), 400, 5)
    standardized = (x - x.mean()) / x.std()          # make_dataset standardizes by the whole set's statistics
    np.testing.assert_array_equal(standardized, np.concatenate([reference["x"], reference["x_test"]]))
    np.testing.assert_array_equal(y, np.concatenate([reference["y"], reference["y_test"]]))
    assert np.bincount(y).tolist() == [40] * 10
    with pytest.raises(ValueError, match="multiple of 10"):
        mnist1d.generate(mnist1d.generator_args({}), 55, 0)


def test_sets_are_cached_with_their_sha256_and_a_damaged_file_is_generated_again(sharpbench_home: Path):
    args = mnist1d.generator_args({})
    x, y, sha256 = mnist1d.cached_set(args, 100, 3)
    files = sorted((sharpbench_home / "data" / "mnist1d").glob("*.safetensors"))
    assert len(files) == 1
    again = mnist1d.cached_set(args, 100, 3)
    assert again[2] == sha256 and np.array_equal(again[0], x)
    files[0].write_bytes(files[0].read_bytes()[:-8] + b"\0" * 8)       # damaged: fails its sha256
    repaired = mnist1d.cached_set(args, 100, 3)
    assert repaired[2] == sha256 and np.array_equal(repaired[0], x)
    assert mnist1d.cached_set(args, 100, 4)[2] != sha256                # another seed, another set


def test_splits_are_standardized_by_the_training_set_and_ood_sets_are_generated_or_corrupted(tmp_path: Path):
    spec = load_collection_spec(_card(tmp_path))
    splits = load_splits(spec.dataset, [(s.name, s.kind, s.params) for s in spec.shifts])
    x_train, _ = splits.train.tensors
    assert abs(float(x_train.mean())) < 1e-5 and abs(float(x_train.std(unbiased=False)) - 1) < 1e-5
    noisier = splits.ood["noisier"].dataset.tensors
    assert noisier[0].shape == (100, 40) and len(set(noisier[1].tolist())) == 10
    x_test, y_test = splits.test.dataset.tensors
    noisy, labels = splits.ood["noise"].dataset.tensors
    assert noisy.shape == x_test.shape and labels.equal(y_test)
    assert 0.3 < float((noisy - x_test).std()) < 0.7                   # N(0, 0.5^2), not clipped to [0, 1]
    # the generator's arguments change the signals: more correlated noise raises their spread
    plain = mnist1d.generated_ood_set(spec.dataset, {"seed": 7, "num_examples": 100})[0]
    assert float(noisier[0].std()) > float(plain.std())


def test_a_card_names_the_generators_arguments_and_rejects_a_misspelt_one(tmp_path: Path):
    card = {**CARD, "dataset": {**CARD["dataset"], "shear_scale": 1.5}}
    spec = load_collection_spec(_card(tmp_path, card))
    assert spec.dataset["shear_scale"] == 1.5 and spec.dataset["corr_noise_scale"] == 0.25
    assert spec.architecture["in_features"] == 40
    bad = {**CARD, "ood_shifts": [{"name": "x", "kind": "generator", "params": {"sheer_scale": 1.0, "seed": 1}}]}
    with pytest.raises(CardError, match="sheer_scale"):
        load_collection_spec(_card(tmp_path / "bad", bad))


def test_a_grouped_build_gives_the_same_bits_twice_and_when_resumed(tmp_path: Path):
    spec = load_collection_spec(_card(tmp_path / "cards"))
    one = open_collection(spec, home=tmp_path / "one")
    build_collection(one, progress=False)
    assert len(one.models) == 12
    manifest = json.loads(one.manifest_path.read_text())
    assert set(manifest["dataset"]["data_sha256"]) == {"train", "test", "ood/noisier"}
    two = open_collection(spec, home=tmp_path / "two")
    build_collection(two, progress=False)
    # resumed: two models of one group and one of another lost, rebuilt with their groups
    lost = [two.models[0].id, two.models[1].id, two.models[7].id]
    for model_id in lost:
        (two.root / "records" / f"{model_id}.json").unlink()
    two.manifest_path.unlink()
    build_collection(open_collection(spec, home=tmp_path / "two"), progress=False)
    again = open_collection(spec, home=tmp_path / "two")
    assert [(r.id, r.sha256, r.outcomes_sha256) for r in one.models] == \
           [(r.id, r.sha256, r.outcomes_sha256) for r in again.models]


def test_models_trained_on_prefixes_of_the_training_set_are_measured_on_the_prefix_they_all_saw(tmp_path: Path):
    card = {**CARD, "name": "tiny-subsets", "grid": {"train_subset": [100, 200], "learning_rate": [0.1]},
            "architecture": {**CARD["architecture"], "width": 8},
            "sharpness_data": {"n": 150, "m": 50, "seed": 0}}
    spec = load_collection_spec(_card(tmp_path / "cards", card))
    assert spec.shared_train_subset == 100
    collection = open_collection(spec, home=tmp_path / "home")
    build_collection(collection, progress=False)
    assert collection.set_sizes()["train"] == 100
    x_train = collection.data().train.tensors[0]
    batches = collection.sharpness_batches()
    assert sum(len(inputs) for inputs, _ in batches) == 100               # n = 150, but only 100 shared
    seen = {tuple(row.tolist()) for row in x_train[:100]}
    assert all(tuple(row.tolist()) in seen for inputs, _ in batches for row in inputs)
    sizes = sorted(model.hparams["train_subset"] for model in collection.models)
    assert sizes == [100, 100, 200, 200]
    too_large = {**card, "name": "tiny-too-large", "grid": {"train_subset": [100, 500], "learning_rate": [0.1]}}
    with pytest.raises(Exception, match="train_subset 500 .* larger than its training set"):
        build_collection(open_collection(load_collection_spec(_card(tmp_path / "big", too_large)),
                                         home=tmp_path / "home"), progress=False)
