"""scikit-learn's 8x8 digits: bundled with scikit-learn, so the default collection needs no download."""

from __future__ import annotations

from typing import Any

import torch

Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def load_digits(cfg: dict[str, Any]) -> Split:
    """scikit-learn's 8x8 digits (bundled, no download): pixels / 16 in [0, 1], flat 64-dim, 10 classes,
    a stratified split with ``test_fraction`` of the points held out, seeded by ``split_seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data / 16.0).astype("float32")
    y = bunch.target.astype("int64")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=float(cfg["test_fraction"]), stratify=y, random_state=int(cfg["split_seed"]), shuffle=True
    )
    return (torch.from_numpy(x_train).contiguous(), torch.from_numpy(y_train).contiguous(),
            torch.from_numpy(x_test).contiguous(), torch.from_numpy(y_test).contiguous())
