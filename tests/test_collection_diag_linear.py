"""The diag-linear-nets card reaches both regimes of the study's toy model (Woodworth et al. 2020): its smallest
initialization scale recovers the sparse ground truth, its largest lands on the min-L2 interpolator.

Trains the card's two extreme networks with the card's own data and recipe (about 2,100 gradient steps), so a
change of the card, the data, the model or the training loop that loses either regime fails here."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch

from sharpbench.collection.spec import load_collection_spec
from sharpbench.data.registry import load_dataset
from sharpbench.models.registry import build_model
from sharpbench.training.loop import train_model
from tensor_scoring import errors_on

CARD = Path(__file__).resolve().parents[1] / "registry" / "collections" / "diag-linear-nets.yaml"


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread, as the builder trains (two threads on a busy 2-core machine are 7 times slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(spec, scale: float, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The card's network at ``scale``, trained by the card's recipe; returns its predictor beta = u * v."""
    torch.manual_seed(0)
    model = build_model(spec.architecture, {"init_scale": scale})
    train_model(model, x, y, spec.training, {"init_scale": scale}, seed=0, loss=spec.loss)
    assert errors_on(model, x, y, spec.loss)[0] <= spec.training["stop_train_loss"]
    return (model.u * model.v).detach().double()


def test_diag_linear_nets_span_the_sparse_and_the_min_l2_regime(one_thread: None):
    spec = load_collection_spec(CARD)
    x, y, x_test, y_test = load_dataset(spec.dataset)
    # beta* from train and test together (more points than dimensions, no noise: identified exactly)
    inputs, targets = torch.cat([x, x_test]).double(), torch.cat([y, y_test]).double()
    truth = torch.linalg.lstsq(inputs, targets.unsqueeze(1)).solution.squeeze(1)
    min_l2 = torch.linalg.pinv(x.double()) @ y.double()                     # the kernel regime's limit
    scales = spec.grid["init_scale"]
    small, large = _train(spec, min(scales), x, y), _train(spec, max(scales), x, y)

    def test_mse(beta: torch.Tensor) -> float:
        return float((x_test.double() @ beta - y_test.double()).square().mean())

    assert test_mse(small) < 0.01                                           # the sparse regime: beta* recovered
    assert float((small - truth).abs().max()) < 0.02
    assert float(small.abs().sum()) < 0.7 * float(large.abs().sum())       # far smaller L1 norm
    assert test_mse(large) > 0.2                                            # the kernel regime: no recovery ...
    assert float((large - min_l2).norm()) < 0.2 * float(min_l2.norm())      # ... near the min-L2 interpolator
