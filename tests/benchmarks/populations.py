"""Synthetic populations for the scoring benchmarks: many models over a hyperparameter grid with seeds, and their
per-example outcomes on a test set, two OOD sets drawn on the test images and a train subset, stored as scoring keeps
them (0/1 errors as uint8, losses as float16 to hold 50,000 models x 21,000 examples in memory).

A model's error on an example is a Bernoulli draw with P = sigmoid(ability + difficulty (+ the OOD set's offset)),
the difficulty shared by every model (models err on the same hard examples), the ability set by the model's
hyperparameters plus its seed's noise; the measure is the ability plus noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sharpbench.scoring.resampling import OutcomeSet

GRID = {"learning_rate": 5, "batch_size": 4, "width": 3, "weight_decay": 3}   # 180 configurations
OOD_OFFSETS = (0.5, 1.0)
_CHUNK = 2_000   # models generated at once


@dataclass(frozen=True)
class Population:
    values: np.ndarray
    hparams: dict[str, list[float]]
    sets: dict[str, OutcomeSet]

    @property
    def shifts(self) -> list[str]:
        return [name.split("/", 1)[1] for name in self.sets if name.startswith("ood/")]


def population(models: int, test: int = 10_000, train: int = 1_000, seed: int = 0) -> Population:
    """``models`` models: the grid's configurations in turn, then again with the next seed."""
    rng = np.random.default_rng(seed)
    sizes = list(GRID.values())
    configs = np.array(np.unravel_index(np.arange(models) % np.prod(sizes), sizes)).T
    hparams = {name: configs[:, i].astype(float).tolist() for i, name in enumerate(GRID)}
    hparams["seed"] = (np.arange(models) // np.prod(sizes)).astype(float).tolist()
    ability = -1.2 + 0.15 * configs[:, 0] - 0.1 * configs[:, 1] + 0.05 * configs[:, 2] + rng.normal(0, 0.2, models)
    difficulty = 1.5 * rng.normal(size=test)
    train_difficulty = 1.5 * rng.normal(size=train)

    def outcomes(size: int, shift: np.ndarray, offset: float, sample: str) -> OutcomeSet:
        error = np.empty((models, size), dtype=np.uint8)
        loss = np.empty((models, size), dtype=np.float16)
        for start in range(0, models, _CHUNK):
            logit = ability[start:start + _CHUNK, None] + offset + shift[None]
            chance = 1 / (1 + np.exp(-logit))
            drawn = rng.random(chance.shape) < chance
            error[start:start + _CHUNK] = drawn
            loss[start:start + _CHUNK] = np.where(drawn, -np.log(1 - chance + 1e-6), -np.log(chance + 1e-6)) * 0.3
        return OutcomeSet(error, loss, sample)

    sets = {"train": outcomes(train, train_difficulty, -2.0, "train"), "test": outcomes(test, difficulty, 0.0, "test")}
    for index, offset in enumerate(OOD_OFFSETS):
        sets[f"ood/shift-{index}"] = outcomes(test, difficulty, offset, "test")
    return Population(ability + rng.normal(0, 0.3, models), hparams, sets)
