"""How a score's replicates become its intervals: for the test-set noise, the point minus the replicates'
deviations from their mean (docs/scoring.md#intervals); over models, the percentile interval. Both are widened to
hold the point, so that a point never lies outside its interval. A metric's declaration names the two it uses
(`sharpbench.scoring.metrics.Metric.intervals`)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from sharpbench.scoring.resampling import Bootstrap

Interval = Callable[[np.ndarray, float, tuple[float, float], Bootstrap], list[float]]


def finite(replicates: np.ndarray) -> np.ndarray:
    """The defined replicates (a resample on which the metric is undefined is left out)."""
    return replicates[np.isfinite(replicates)]


def noise_interval(replicates: np.ndarray, point: float, bounds: tuple[float, float],
                   bootstrap: Bootstrap) -> list[float]:
    """The point minus the upper and lower quantiles of the replicates' deviations from their mean, clipped to the
    metric's range and widened to hold the point; NaN without a defined replicate or point."""
    found = finite(replicates)
    if not len(found) or not math.isfinite(point):
        return [math.nan, math.nan]
    low_q, high_q = bootstrap.tails
    center = found.mean()
    low = point - (np.quantile(found, high_q) - center)
    high = point - (np.quantile(found, low_q) - center)
    return [float(min(max(low, bounds[0]), point)), float(max(min(high, bounds[1]), point))]


def models_interval(replicates: np.ndarray, point: float, bounds: tuple[float, float] = (-math.inf, math.inf),
                    bootstrap: Bootstrap = Bootstrap()) -> list[float]:
    """The percentile interval of the replicates over models, widened to hold the point."""
    found = finite(replicates)
    if not len(found) or not math.isfinite(point):
        return [math.nan, math.nan]
    low, high = np.quantile(found, bootstrap.tails)
    return [float(min(max(low, bounds[0]), point)), float(max(min(high, bounds[1]), point))]


def pivoted(replicates: np.ndarray, point: float) -> np.ndarray:
    """Replicates of the point itself: the point minus each replicate's deviation from their mean."""
    found = finite(replicates)
    return point - (replicates - found.mean()) if len(found) else np.full(len(replicates), np.nan)
