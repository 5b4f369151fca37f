"""Shared fixtures: an isolated SHARPBENCH_HOME for every test, offline hubs, and a tiny collection card."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

TINY_DIGITS_CARD = """\
name: tiny-digits
description: A tiny digits collection for tests (6 small MLPs, a few epochs).
dataset: {name: digits, test_fraction: 0.3333333333333333, split_seed: 0}
ood_shifts:
  - {name: noise, kind: gaussian_noise, params: {std: 0.3, seed: 0}}
  - {name: shift, kind: translate, params: {dx: 0.5}}
architecture: {kind: mlp, depth: 1, width: 16}
grid:
  learning_rate: [0.05, 0.1, 0.2]
  batch_size: [32, 64]
seeds: [0]
training: {optimizer: sgd, momentum: 0.9, epochs: 5, weight_decay: 0.0}
convergence: {max_train_error: 1.0}
sharpness_data: {n: 64, m: 16, seed: 0}
"""


@pytest.fixture(autouse=True)
def sharpbench_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own SHARPBENCH_HOME, so no test touches ~/.cache."""
    home = tmp_path / "sharpbench-home"
    monkeypatch.setenv("SHARPBENCH_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def float64_default() -> Iterator[None]:
    """float64 as the default dtype for one test module (closed forms, oracle agreement), restored after it."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(scope="session")
def tiny_collection_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder usable as --include-path: <tmp>/cards/collections/tiny-digits.yaml (builds in about a second)."""
    cards = tmp_path_factory.mktemp("tiny-cards") / "cards"
    (cards / "collections").mkdir(parents=True)
    (cards / "collections" / "tiny-digits.yaml").write_text(TINY_DIGITS_CARD, encoding="utf-8")
    return cards


@pytest.fixture()
def cards(tiny_collection_card: Path, tmp_path: Path) -> Path:
    """The tiny collection's card and the Ray tests' measures (tests/cluster_cards.py), as one include path."""
    from cluster_cards import cluster_cards

    return cluster_cards(tiny_collection_card, tmp_path / "cards")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Let tests import their helpers (tests/oracle.py) by module name; run each benchmark once, at a small
    size and without statistics, unless --benchmark-only asks for the full benchmarks."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    if hasattr(config.option, "benchmark_only") and not config.option.benchmark_only:
        config.option.benchmark_disable = True
