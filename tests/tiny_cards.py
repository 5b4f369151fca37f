"""The tiny collection card that several test modules build: four one-hidden-layer MLPs on digits, seconds to train."""

from __future__ import annotations

from typing import Any

NOISE = {"name": "noise", "kind": "gaussian_noise", "params": {"std": 0.3, "seed": 0}}


def tiny_mlp_card(name: str, epochs: int = 3, shifts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A 2 x 2 grid (learning rate x width) of MLPs, no convergence filter, n = 64 points in batches of 16."""
    return {
        "name": name,
        "description": "four tiny MLPs",
        "dataset": {"name": "digits", "test_fraction": 0.3333333333333333, "split_seed": 0},
        "ood_shifts": shifts if shifts is not None else [NOISE],
        "architecture": {"kind": "mlp", "depth": 1},
        "grid": {"learning_rate": [0.05, 0.1], "width": [8, 16]},
        "seeds": [0],
        "training": {"optimizer": "sgd", "momentum": 0.9, "epochs": epochs, "batch_size": 64},
        "convergence": {"max_train_error": 1.0},
        "sharpness_data": {"n": 64, "m": 16, "seed": 0},
    }
