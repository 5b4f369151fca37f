"""Training in groups against one model at a time (sharpbench/training/grouped.py against
sharpbench/training/loop.py's train_model, what a build runs without `group_size`): the MNIST-1D zoo's middle
models, 24 of them (one group) on its 4,000 training signals in batches of 64, 2 epochs, with per-model learning
rates and seeds. At full size (--benchmark-only); otherwise 3 models on 200 signals, 1 epoch, once, as a test that
the path works."""

from __future__ import annotations

import pytest
import torch

from sharpbench.data.mnist1d import DATASET_PARAMS, load_mnist1d
from sharpbench.models.registry import build_model
from sharpbench.training.grouped import train_group
from sharpbench.training.loop import train_model

ARCHITECTURES = {"mlp": {"kind": "mlp", "depth": 2, "width": 64},
                 "cnn1d": {"kind": "cnn1d", "depth": 3, "width": 32}}


@pytest.fixture(scope="module")
def signals(setup) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = {name: p.default for name, p in DATASET_PARAMS.items() if p.default is not ...}
    cfg.update(num_train=4000 if setup.full else 200, num_test=10)
    x, y, _, _ = load_mnist1d(cfg)
    return x, y


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
@pytest.mark.parametrize("label", ["one-model-training", "grouped-training"])
def test_training(benchmark, setup, record, signals, architecture, label):
    count = 24 if setup.full else 3
    x, y = signals
    arch = {**ARCHITECTURES[architecture], "in_features": 40, "num_classes": 10}
    recipe = {"optimizer": "sgd", "momentum": 0.9, "batch_size": 64, "epochs": 2 if setup.full else 1}
    hparams = [{"learning_rate": (0.05, 0.1, 0.2)[k % 3]} for k in range(count)]
    seeds = list(range(count))

    def models():
        made = []
        for seed in seeds:
            torch.manual_seed(seed)
            made.append(build_model(arch))
        return (made,), {}

    def alone(made):
        for model, h, seed in zip(made, hparams, seeds):
            train_model(model, x, y, recipe, h, seed)

    def grouped(made):
        train_group(made, x, [y] * count, recipe, hparams, seeds)

    benchmark.pedantic(alone if label == "one-model-training" else grouped, setup=models,
                       rounds=3 if setup.full else 1)
    record("one-model-training", f"{architecture} (MNIST-1D zoo), {count} models", label, per=count)
