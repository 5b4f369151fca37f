"""The builder's recipe options and architectures: workers, regression loss, stop at a training loss, SAM,
augmentation, label noise, CNN / timm / transformers / diagonal linear models, imported cards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from sharpbench.collection.builder import build_collection
from sharpbench.collection.spec import load_collection_spec
from sharpbench.cli.main import render_error
from sharpbench.collection.collection import open_collection
from sharpbench.errors import CardError, CollectionError
from sharpbench.evaluation.run import evaluate
from sharpbench.cards.discovery import Registry
from sharpbench.evaluation.store import ResultStore
from sharpbench.losses import mean_squared_error
from sharpbench.models.registry import build_model
from sharpbench.training.augment import augment
from sharpbench.training.loop import _sam_gradients, train_model
from sharpbench.training.labels import noisy_labels
from tensor_scoring import errors_on
from tiny_cards import tiny_mlp_card

REPO = Path(__file__).resolve().parents[1]

TINY = tiny_mlp_card("tiny-workers")

DIAGONAL = {
    "name": "tiny-diagonal",
    "description": "three diagonal linear networks on sparse regression",
    "dataset": {"name": "sparse-regression", "num_train": 20, "num_test": 100, "dim": 30, "nonzero": 3},
    "ood_shifts": [{"name": "noisy-inputs", "kind": "gaussian_noise", "params": {"std": 0.5, "seed": 0,
                                                                                   "clip": False}}],
    "architecture": {"kind": "diag_linear"},
    "grid": {"init_scale": [0.05, 0.3, 1.0]},
    "seeds": [0],
    "training": {"optimizer": "sgd", "learning_rate": 0.1, "batch_size": 20, "epochs": 20000,
                 "stop_train_loss": 1.0e-4},
    "convergence": {"max_train_error": 1.0e-4},
    "sharpness_data": {"n": 20, "m": 10, "seed": 0},
}


def write_card(folder: Path, card: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{card['name']}.yaml"
    path.write_text(yaml.safe_dump(card, sort_keys=False), encoding="utf-8")
    return path


def test_every_registered_card_is_valid():
    names = {path.stem: load_collection_spec(path) for path in (REPO / "registry" / "collections").glob("*.yaml") if not path.name.startswith("_")}
    for name, spec in names.items():
        assert spec.name == name
        assert spec.imported or spec.grid_size() >= (48 if spec.trained else 20), name   # checkpoint cards: 23-100


@pytest.mark.slow   # spawning two workers that import torch: about 10 s alone, over a minute on a busy machine
def test_workers_build_the_same_bits_as_one_process(tmp_path: Path):
    spec = load_collection_spec(write_card(tmp_path / "cards", TINY))
    one = open_collection(spec, home=tmp_path / "one")
    two = open_collection(spec, home=tmp_path / "two")
    build_collection(one, progress=False)
    build_collection(two, progress=False, workers=2)
    assert [(r.id, r.sha256, r.init_sha256, r.outcomes_sha256, r.test_error) for r in one.models] == \
           [(r.id, r.sha256, r.init_sha256, r.outcomes_sha256, r.test_error) for r in two.models]
    with pytest.raises(CollectionError, match="at least 1"):
        build_collection(open_collection(spec, home=tmp_path / "three"), progress=False, workers=0)


def test_regression_collection_uses_mse_and_the_loss_as_error(tmp_path: Path):
    spec = load_collection_spec(write_card(tmp_path / "cards", DIAGONAL))
    assert spec.loss == "mse" and spec.num_classes == 1 and spec.architecture["in_features"] == 30
    collection = open_collection(spec, home=tmp_path / "home")
    build_collection(collection, progress=False)
    assert collection.loss_fn is mean_squared_error
    assert json.loads(collection.manifest_path.read_text())["loss"] == "mse"
    data = collection.data()
    assert len(collection.models) == 3
    sets = collection.outcome_sets()
    for row, record in enumerate(collection.models):
        model = collection.load_model(record)
        with torch.no_grad():
            predictions = model(data.test.dataset.tensors[0]).squeeze(1)
        squared = (predictions - data.test.dataset.tensors[1]).square().numpy()
        assert record.test_error == pytest.approx(float(squared.mean()), rel=1e-5)
        # per example, the error and the loss are both the squared error; their mean is the MSE
        np.testing.assert_allclose(sets["test"]["error"][row], squared, rtol=1e-5)
        assert np.array_equal(sets["test"]["error"][row], sets["test"]["loss"][row])
        assert record.test_error == float(sets["test"]["error"][row].mean(dtype=np.float64))
        assert record.test_error == record.test_loss and record.train_error <= 1e-4
        initial = collection.load_initial_state(record)
        assert torch.equal(initial["v"], torch.zeros(30))              # the predictor starts at 0
    small, large = collection.models[0], collection.models[2]
    assert small.test_error < large.test_error                         # small init: sparse, better (the toy's point)
    x, y = collection.sharpness_batches()[0]
    assert y.dtype == torch.float32 and x.shape == (10, 30)
    # evaluate hands the measures the collection's own loss: train-loss is the MSE, and sharpness runs on it
    store = ResultStore(tmp_path / "results.sqlite")
    losses = evaluate(Registry.discover().measure("train-loss"), collection, store, progress=False)
    batches = collection.sharpness_batches()
    for record in collection.models:
        model = collection.load_model(record)
        with torch.no_grad():
            expected = sum(float((model(x).squeeze(1) - y).square().sum()) for x, y in batches) / 20
        assert losses.values[record.id] == pytest.approx(expected, rel=1e-5)
    sharpness = evaluate(Registry.discover().measure("sharpness-worst-linf-standard"), collection, store,
                         progress=False)
    assert all(value > 0 for value in sharpness.values.values())


def test_loss_must_fit_the_dataset(tmp_path: Path):
    with pytest.raises(CardError) as caught:
        load_collection_spec(write_card(tmp_path, {**DIAGONAL, "loss": "cross_entropy"}))
    assert caught.value.field == "loss"
    with pytest.raises(CardError):
        load_collection_spec(write_card(tmp_path, {**TINY, "loss": "hinge"}))


def test_imported_card_has_no_training_sections(tmp_path: Path):
    card = {k: v for k, v in TINY.items() if k not in ("grid", "seeds", "training", "convergence")}
    spec = load_collection_spec(write_card(tmp_path, {**card, "imported": True, "architecture": {
        "kind": "mlp", "depth": 1, "width": 8}}))
    assert spec.imported and spec.grid_size() == 0
    with pytest.raises(CollectionError, match="cannot be trained here") as imported:
        build_collection(open_collection(spec, home=tmp_path / "home"), progress=False)
    assert "sharpbench collection import DIR" in render_error(imported.value)
    with pytest.raises(CardError) as caught:
        load_collection_spec(write_card(tmp_path, {**TINY, "imported": True}))
    assert caught.value.field == "grid"


# ------------------------------------------------------------------------------------------------ recipe


def _digits(n: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    from sharpbench.data.registry import load_dataset

    x, y, _, _ = load_dataset({"name": "digits", "test_fraction": 0.3333333333333333, "split_seed": 0})
    return x[:n], y[:n]


def test_stop_at_training_loss_stops_at_the_first_epoch_below_it():
    x, y = _digits(100)
    arch = {"kind": "mlp", "in_features": 64, "num_classes": 10, "width": 16}
    recipe = {"optimizer": "sgd", "momentum": 0.9, "learning_rate": 0.1, "batch_size": 50, "epochs": 200}
    torch.manual_seed(0)
    model = build_model(arch)
    epochs = train_model(model, x, y, {**recipe, "stop_train_loss": 0.1}, {}, seed=0)
    assert 1 < epochs < 200
    assert errors_on(model, x, y)[1] <= 0.1
    torch.manual_seed(0)
    shorter = build_model(arch)
    assert train_model(shorter, x, y, {**recipe, "epochs": epochs - 1}, {}, seed=0) == epochs - 1
    assert errors_on(shorter, x, y)[1] > 0.1


def test_sam_gradient_on_a_quadratic():
    class Vector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.tensor([3.0, 4.0]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.w

    model = Vector()
    loss_fn = lambda out, target: 0.5 * out.square().sum()  # noqa: E731 - gradient w, SAM gradient w (1 + rho/|w|)
    params = [model.w]
    grads = torch.autograd.grad(loss_fn(model(None), None), params)
    sam = _sam_gradients(model, params, grads, None, None, loss_fn, rho=0.5)
    assert torch.allclose(sam[0], torch.tensor([3.0, 4.0]) * (1 + 0.5 / 5.0))
    assert torch.equal(model.w.detach(), torch.tensor([3.0, 4.0]))     # restored


def test_augmentation_flips_and_crops_each_image():
    images = torch.rand(40, 1, 6, 6, generator=torch.Generator().manual_seed(1)) + 0.1   # no zeros inside
    generator = torch.Generator().manual_seed(0)
    flipped = augment(images, "flip", 0, generator)
    same = [torch.equal(a, b) for a, b in zip(flipped, images)]
    mirrored = [torch.equal(a, b.flip(-1)) for a, b in zip(flipped, images)]
    assert all(s or m for s, m in zip(same, mirrored)) and any(same) and any(mirrored)
    cropped = augment(images, "crop", 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for out, source in zip(cropped, padded):
        assert any(torch.equal(out, source[:, dy:dy + 6, dx:dx + 6]) for dy in range(5) for dx in range(5))
    assert not torch.equal(cropped, images)


def test_label_noise_replaces_a_seeded_fraction():
    y = torch.arange(10).repeat(1000)
    noisy = noisy_labels(y, 0.3, 10, seed=0)
    changed = float((noisy != y).float().mean())
    assert abs(changed - 0.3 * 0.9) < 0.02                              # a redrawn label keeps its class 1 in 10
    assert torch.equal(noisy, noisy_labels(y, 0.3, 10, seed=0)) and not torch.equal(noisy, noisy_labels(y, 0.3, 10, 1))
    assert noisy_labels(y, 0.0, 10, seed=0) is y


def test_label_noise_is_what_the_model_is_trained_and_measured_on(tmp_path: Path):
    card = {**TINY, "grid": {"learning_rate": [0.1]}, "architecture": {"kind": "mlp", "depth": 1, "width": 64},
            "training": {**TINY["training"], "epochs": 2, "label_noise": 0.5}}
    collection = open_collection(load_collection_spec(write_card(tmp_path / "cards", card)), home=tmp_path / "h")
    build_collection(collection, progress=False)
    record = collection.models[0]
    data = collection.data()
    noisy = noisy_labels(data.train_tensors()[1], 0.5, 10, seed=0)
    model = collection.load_model(record)
    assert record.train_error == pytest.approx(errors_on(model, data.train_tensors()[0], noisy)[0])
    assert record.train_error > errors_on(model, data.train_tensors()[0], data.train_tensors()[1])[0]
    with torch.no_grad():
        wrong = (model(data.train_tensors()[0]).argmax(1) != noisy).float().numpy()
    assert np.array_equal(collection.outcome_sets()["train"]["error"][0], wrong)    # against the noisy labels too


# ---------------------------------------------------------------------------------------------- architectures


def test_cnn_downsampling_variants():
    for downsample in ("maxpool", "stride"):
        model = build_model({"kind": "cnn", "image_shape": [1, 28, 28], "num_classes": 10, "width": 4,
                             "downsample": downsample})
        assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
        assert model(torch.rand(3, 784)).shape == (3, 10)              # flat inputs are reshaped
    assert list(model.parameters())[-2].shape == (10, 8 * 7 * 7)          # stride: 28 -> 14 -> 7, width 4 -> 8


def test_timm_vit_by_name_with_overrides():
    model = build_model({"kind": "timm", "model": "vit_tiny_patch16_224", "image_shape": [1, 8, 8], "num_classes": 10,
                         "kwargs": {"img_size": 8, "patch_size": 2, "embed_dim": 16, "depth": 1, "num_heads": 2}})
    vit = model[1]
    assert vit.patch_embed.num_patches == 16 and vit.embed_dim == 16 and len(vit.blocks) == 1
    assert model(torch.rand(5, 64)).shape == (5, 10)


def test_transformers_classifier_masks_padding():
    model = build_model({"kind": "transformers", "num_classes": 3, "vocab_size": 20, "pad_token_id": 0,
                         "config": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                                    "intermediate_size": 32, "max_position_embeddings": 16,
                                    "initializer_range": 0.5}}).eval()   # large weights: outputs vary visibly
    ids = torch.tensor([[5, 6, 7, 8]])
    padded = torch.tensor([[5, 6, 7, 8, 0, 0, 0]])
    with torch.no_grad():
        assert model(ids).shape == (1, 3)
        assert torch.allclose(model(ids), model(padded), atol=1e-5)    # padding is masked out ...
        unmasked = model.model(input_ids=padded).logits
        assert (unmasked - model(padded)).abs().max() > 1e-3          # ... which it would not be without the mask


def test_diagonal_linear_net_computes_u_times_v():
    model = build_model({"kind": "diag_linear", "in_features": 4, "num_classes": 1, "init_scale": 0.5})
    assert torch.allclose(model.u, torch.full((4,), 0.5 * 2 ** 0.5)) and torch.equal(model.v, torch.zeros(4))
    with torch.no_grad():
        model.v.copy_(torch.tensor([1.0, -2.0, 0.0, 3.0]))
    x = torch.rand(6, 4)
    assert torch.allclose(model(x), (x @ (model.u * model.v)).unsqueeze(1))


def test_the_cyclic_schedule_rises_to_the_peak_at_40_percent_and_falls_to_zero():
    from sharpbench.training.recipe import SCHEDULES

    rates = [SCHEDULES["cyclic"](0.4, step, 100) for step in range(100)]
    assert rates[39] == pytest.approx(0.4) and max(rates) == pytest.approx(0.4)         # the end of step 40 of 100
    assert rates[-1] == 0.0 and rates[0] == pytest.approx(0.4 / 40)
    rising, falling = np.diff(rates[:40]), np.diff(rates[39:])
    assert np.allclose(rising, 0.01) and np.allclose(falling, -0.4 / 60)                 # linear both ways


def test_randaugment_is_reproducible_from_the_generator_and_leaves_the_global_one_alone():
    from sharpbench.training.augment import rand_augment

    images = torch.rand(6, 3, 32, 32)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = rand_augment(images, torch.Generator().manual_seed(0))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(first, rand_augment(images, torch.Generator().manual_seed(0)))
    assert not torch.equal(first, rand_augment(images, torch.Generator().manual_seed(1)))
    assert torch.equal(first, (first * 255).round() / 255) and first.min() >= 0 and first.max() <= 1   # 8-bit
    untouched = rand_augment(images, torch.Generator().manual_seed(0), ops=0)
    assert torch.equal(untouched, (images * 255).round() / 255)                         # no operation: quantized only
