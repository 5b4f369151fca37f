"""Training models as a stacked, vmapped group (sharpbench/training/grouped.py) against training each alone with
train_model: the same weights to float rounding for every optimizer, per-model learning rates, weight decays,
momenta, seeds and labels; the same bits when a group is trained twice."""

from __future__ import annotations

import pytest
import torch

from sharpbench.models.registry import build_model
from sharpbench.training.grouped import group_key, train_group
from sharpbench.training.loop import train_model

ARCHITECTURES = {
    "mlp": {"kind": "mlp", "in_features": 12, "num_classes": 4, "width": 16, "depth": 2},
    "cnn1d": {"kind": "cnn1d", "in_features": 12, "num_classes": 4, "width": 6, "depth": 2},
}
HPARAMS = [{"learning_rate": 0.05, "weight_decay": 0.0, "momentum": 0.9},
           {"learning_rate": 0.02, "weight_decay": 0.01, "momentum": 0.5},
           {"learning_rate": 0.1, "weight_decay": 0.001, "momentum": 0.0}]


def _data(n: int = 50) -> tuple[torch.Tensor, list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 12, generator=generator)
    return x, [torch.randint(0, 4, (n,), generator=generator) for _ in HPARAMS]


def _models(arch: dict, seeds: list[int]) -> list[torch.nn.Module]:
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(build_model(arch))
    return models


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("optimizer,nesterov", [("sgd", False), ("sgd", True), ("adam", False), ("adamw", False)])
def test_a_group_trains_each_model_as_train_model_does(arch, optimizer, nesterov):
    recipe = {"optimizer": optimizer, "batch_size": 16, "epochs": 3, "schedule": "cosine", "nesterov": nesterov}
    hparams = [dict(h, momentum=h["momentum"] or 0.3) if nesterov else h for h in HPARAMS]
    if optimizer != "sgd":
        hparams = [{**h, "learning_rate": h["learning_rate"] / 10} for h in hparams]
    x, labels = _data()
    seeds = [3, 4, 5]
    grouped = _models(ARCHITECTURES[arch], seeds)
    epochs = train_group(grouped, x, labels, recipe, hparams, seeds)
    assert epochs == [3, 3, 3]
    for model, y, h, seed in zip(grouped, labels, hparams, seeds):
        alone = _models(ARCHITECTURES[arch], [seed])[0]
        initial = [p.detach().clone() for p in alone.parameters()]
        train_model(alone, x, y, recipe, h, seed)
        for got, want, start in zip(model.parameters(), alone.parameters(), initial):
            assert not torch.equal(want, start)                          # it trained
            torch.testing.assert_close(got, want, rtol=2e-4, atol=2e-5)


def test_a_group_trained_twice_gives_the_same_bits_with_dropout():
    arch = {**ARCHITECTURES["mlp"], "dropout": 0.2}
    recipe = {"optimizer": "sgd", "batch_size": 16, "epochs": 2}
    x, labels = _data()
    runs = []
    for _ in range(2):
        models = _models(arch, [1, 2, 3])
        train_group(models, x, labels, recipe, HPARAMS, [1, 2, 3], group_seed=7)
        runs.append(torch.cat([p.detach().flatten() for m in models for p in m.parameters()]))
    assert torch.equal(runs[0], runs[1])
    models = _models(arch, [1, 2, 3])
    train_group(models, x, labels, recipe, HPARAMS, [1, 2, 3], group_seed=8)   # other masks, other weights
    assert not torch.equal(runs[0], torch.cat([p.detach().flatten() for m in models for p in m.parameters()]))


def test_the_group_key_separates_what_shapes_or_counts_steps_and_refuses_early_stops():
    arch = ARCHITECTURES["mlp"]
    recipe = {"optimizer": "sgd", "batch_size": 16, "epochs": 2}
    assert group_key(recipe, HPARAMS[0], arch) == group_key(recipe, HPARAMS[1], arch)
    assert group_key(recipe, {**HPARAMS[0], "batch_size": 32}, arch) != group_key(recipe, HPARAMS[0], arch)
    assert group_key(recipe, HPARAMS[0], {**arch, "width": 8}) != group_key(recipe, HPARAMS[0], arch)
    assert group_key({**recipe, "stop_train_loss": 0.01}, HPARAMS[0], arch) is None
    with pytest.raises(ValueError, match="one model at a time"):      # train_group never drops the early stop
        train_group(_models(arch, [1, 2]), *_data(), {**recipe, "stop_train_loss": 0.01}, HPARAMS[:2], [1, 2])
    with pytest.raises(ValueError, match="share"):
        train_group(_models(arch, [1, 2]), *_data(), recipe, [HPARAMS[0], {**HPARAMS[1], "epochs": 3}], [1, 2])
