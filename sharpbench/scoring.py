"""Scores: rank correlations of a measure's values with each generalization target over a collection."""

from __future__ import annotations

import math
from typing import Sequence

from scipy import stats


def kendall_tau_b(values: Sequence[float], target: Sequence[float]) -> float:
    """Kendall tau-b (ties handled), NaN when either side is constant or fewer than 2 models."""
    if len(values) < 2:
        return math.nan
    return float(stats.kendalltau(values, target, variant="b").statistic)


def score_targets(values: Sequence[float], targets: dict[str, Sequence[float]]) -> dict[str, dict[str, float]]:
    """{target name: {"kendall_tau": tau}} for every target, in the given order."""
    return {name: {"kendall_tau": kendall_tau_b(values, target)} for name, target in targets.items()}
