"""What finite evaluation sets add to a target: the noise between models, and a plausible truth beneath it.

A model's observed target is its true expected target plus the noise of the examples the sets happened to hold.
Ranks only see the noise of differences: for a pair of models (a, b) the variance of (target_a - target_b) over
test sets, which the per-example outcomes estimate without bias (the variance of the paired per-example
differences over n - 1, divided by n, summed over independent samples of examples; sets drawn on the same
examples enter through their combined per-example outcome). ``pair_noise`` is its mean over all pairs, computed
from per-example sums over models in O(models x examples), without forming pairs.

The plausible truth: the observed targets pulled toward their mean by k, so that the truth's spread is what the
observed spread leaves after the noise. With D the mean squared difference of the observed targets over pairs
(twice their variance s^2) and N the pair noise (twice a model's noise), the truth's variance V is its posterior
mean given s^2, with (m - 1) s^2 / (V + N / 2) a chi-square with m - 1 degrees of freedom and Jeffreys' prior
1 / (V + N / 2) on V >= 0; k^2 = V / s^2 (a reliability). Unlike the method of moments, max(0, 1 - N / D), it is
never exactly 0: where the spread is within the noise it says the truth may still differ, by as much as the data
allow. (Simulated, 60 models, 599 examples, true errors uniform over 1.3 / 3 / 5 / 15 binomial standard
deviations: bias of the noise ceiling +0.073 / -0.002 / 0.000 / -0.002; the method of moments -0.052 / -0.019 /
-0.008 / -0.002 with a mean absolute error of 0.144 against 0.078 at 1.3; a flat prior +0.084 / +0.010 / +0.007.) Adding the resampled
noise (a resample's targets minus the observed ones) to it gives evaluation sets of the collection's sizes drawn
around a truth as spread out as the data say the real one is; resampling the observed targets instead would draw
around a truth that carries the noise once already, which is why intervals read from plain resamples come out
too narrow and off centre where the noise is large (docs/scoring.md#intervals).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy import stats

from sharpbench.scoring.resampling import OutcomeSet, Target, sample_of

_CHUNK_ELEMENTS = 25_000_000


def mean_pair_square(values: np.ndarray) -> np.ndarray:
    """The mean over pairs of models of the squared difference, for each row (any leading shape)."""
    values = np.asarray(values, dtype=float)
    m = values.shape[-1]
    pairs = m * (m - 1) / 2
    return (m * (values ** 2).sum(axis=-1) - values.sum(axis=-1) ** 2) / pairs


def _combined_terms(target: Target, sets: Mapping[str, OutcomeSet]) -> dict[str, list[tuple[str, str, float]]]:
    """The target's terms grouped by the sample of examples their sets are drawn on."""
    groups: dict[str, list[tuple[str, str, float]]] = {}
    for name, kind, coefficient in target.terms:
        groups.setdefault(sample_of(name, sets[name]), []).append((name, kind, coefficient))
    return groups


def pair_noise(target: Target, sets: Mapping[str, OutcomeSet]) -> float:
    """N: the mean over pairs of models of the (unbiased) estimated variance of target_a - target_b that the
    evaluation sets' sampling adds; 0 for a single model or sets of one example."""
    total = 0.0
    for terms in _combined_terms(target, sets).values():
        first = sets[terms[0][0]]
        m, n = first.models, first.examples
        if m < 2 or n < 2:
            continue
        by_example_sum = np.zeros(n)
        by_example_square = np.zeros(n)
        model_means = np.zeros(m)
        step = max(1, _CHUNK_ELEMENTS // n)
        for start in range(0, m, step):
            # the combined per-example outcome of each model in the chunk: sum of coefficient x outcome
            combined = sum(coefficient * np.asarray(getattr(sets[name], kind)[start:start + step], dtype=np.float64)
                           for name, kind, coefficient in terms)
            by_example_sum += combined.sum(axis=0)
            by_example_square += (combined ** 2).sum(axis=0)
            model_means[start:start + step] = combined.mean(axis=1)
        pairs = m * (m - 1) / 2
        # mean over pairs of the per-example squared differences, minus that of the mean differences
        squared = (m * by_example_square - by_example_sum ** 2).sum() / (n * pairs)
        variance = (squared - mean_pair_square(model_means)) * n / (n - 1)
        total += variance / n
    return float(total)


def truth_variance(variance: float | np.ndarray, noise: float, models: int) -> float | np.ndarray:
    """The posterior mean of the truth's variance V given the observed variance s^2 of ``models`` values whose
    noise has variance n0 = ``noise`` / 2: (m - 1) s^2 / (V + n0) ~ chi-square(m - 1), prior 1 / (V + n0) on
    V >= 0. Then V + n0 is inverse-gamma (shape (m - 1) / 2, scale (m - 1) s^2 / 2) cut to [n0, inf), whose mean is
    scale / (shape - 1) x sf(n0; shape - 1) / sf(n0; shape) (x f_a(x) = scale / (a - 1) f_(a-1)(x)). Few models
    (shape <= 1.5): the method of moments, max(0, s^2 - n0). ``variance`` may be an array (one per row)."""
    observed = np.asarray(variance, dtype=float)
    floor = noise / 2
    shape = (models - 1) / 2
    scale = (models - 1) * observed / 2
    moments = np.maximum(0.0, observed - floor)
    if shape <= 1.5:
        return float(moments) if moments.ndim == 0 else moments
    positive = scale > 0
    safe = np.where(positive, scale, 1.0)
    kept = stats.invgamma.sf(floor, shape, scale=safe)
    defined = positive & (kept > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        posterior = safe / (shape - 1) * stats.invgamma.sf(floor, shape - 1, scale=safe) / kept - floor
    out = np.where(defined, posterior, moments)
    return float(out) if out.ndim == 0 else out


def _shrink_factors(observed: np.ndarray, noise: float) -> np.ndarray:
    """k for each row of ``observed`` (rows x models): `shrink_factor` row by row, in one pass."""
    spread = np.asarray(mean_pair_square(observed), dtype=float)
    defined = (spread > 0) & np.isfinite(spread)
    safe = np.where(defined, spread / 2, 1.0)
    ratio = np.minimum(1.0, np.asarray(truth_variance(safe, noise, observed.shape[-1])) / safe)
    return np.where(defined, np.sqrt(np.maximum(ratio, 0.0)), 0.0)


def shrink_factor(observed: np.ndarray, noise: float) -> float:
    """k = sqrt(V / s^2): how far the observed targets' spread is the truth's (`truth_variance`)."""
    return float(_shrink_factors(np.asarray(observed, dtype=float)[None], noise)[0])


def plausible_truth(observed: np.ndarray, noise: float) -> np.ndarray:
    """The observed targets pulled toward their mean by the shrink factor (``observed`` may have a leading axis:
    each row is shrunk with its own spread)."""
    observed = np.asarray(observed, dtype=float)
    rows = np.atleast_2d(observed)
    mean = rows.mean(axis=1, keepdims=True)
    truth = mean + _shrink_factors(rows, noise)[:, None] * (rows - mean)
    return truth.reshape(observed.shape)
