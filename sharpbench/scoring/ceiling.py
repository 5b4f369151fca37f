"""The noise ceiling: the Kendall tau that the models' true expected targets reach, on average over evaluation sets
of the collection's sizes, against the observed target; no measure can be expected to beat it (its own tau against
the observed target averages at most about this much).

Estimator (a plug-in): the plausible truth (the observed targets pulled toward their mean until their spread is
what the noise leaves, :mod:`sharpbench.scoring.noise`) against itself plus each resample's noise (a resample's
targets minus the observed ones: the same examples for every model, so shared hard examples and sets drawn on the
same images keep their correlation), averaged over the resamples.

Its interval: the same estimator on data drawn around that truth. Replicate j takes the truth plus resample j's
noise as its observed targets, finds their plausible truth, and averages that truth's tau against itself plus
``INNER`` other resamples' noise (drawn at random, so that replicates share almost none); the replicates' spread
about their mean stands for the estimator's, and their mean minus the estimate for its bias. The interval is the
estimate minus the bias, minus the upper and lower quantiles of the deviations, widened to hold the estimate. The
few inner draws add their Monte Carlo error to the spread; it is left in: taking it out (the within-replicate
variance over INNER) gave intervals too narrow, 0.74 coverage at 599 examples and a spread of 15 binomial standard
deviations, where keeping it gives 0.93 (the replicates, drawn around one truth, miss part of the estimator's
spread over test sets).

This replaced split-half reliability with the Spearman-Brown correction, whose replicates drew one split each while
the estimate averaged 200, clipped negative split-half taus to 0 and were biased upward (their halves came from
the observed examples): on digits-mlp it read 0.579 [0.000, 0.877]. Simulated bias and coverage are in
docs/scoring.md#noise-ceiling (tests/test_coverage.py).
"""

from __future__ import annotations

import math

import numpy as np

from sharpbench.scoring import correlation
from sharpbench.scoring.noise import plausible_truth
from sharpbench.scoring.resampling import Bootstrap

INNER = 5           # inner resamples per replicate
REPLICATES = 200    # replicates of the estimator
_CHUNK_ELEMENTS = 8_000_000


def plug_in(truth: np.ndarray, noise: np.ndarray) -> tuple[float, np.ndarray]:
    """The mean tau of ``truth`` against truth + each row of ``noise``, and the taus; 0 for a constant truth (no
    difference between the models beyond the noise)."""
    if np.ptp(truth) == 0:
        return 0.0, np.zeros(len(noise))
    taus = correlation.kendall(truth, truth + noise)
    finite = taus[np.isfinite(taus)]
    return (float(finite.mean()) if len(finite) else math.nan), taus


def noise_ceiling(observed: np.ndarray, noise: np.ndarray, pair_noise: float,
                  bootstrap: Bootstrap) -> tuple[float, list[float], np.ndarray]:
    """(estimate, [low, high], pivot-corrected replicates (one per replicate, for ratios)) of a target's ceiling.

    ``observed``: the target over the models; ``noise``: resamples x models, each resample's target minus the
    observed one; ``pair_noise``: the mean noise variance of the pairs' differences."""
    truth = plausible_truth(observed, pair_noise)
    estimate, _ = plug_in(truth, noise)
    count = min(REPLICATES, len(noise))
    inner = min(INNER, len(noise) - 1)
    # every replicate's truth against itself plus its inner resamples' noise, in one call; the inner resamples of
    # each replicate are drawn at random (seeded) among the others, so that replicates share almost none of them
    # (shared inner draws would make the replicates' Monte Carlo errors alike, and the correction below too large)
    truths = plausible_truth(truth + noise[:count], pair_noise)                       # count x models
    rng = np.random.default_rng([bootstrap.seed, len(noise)])
    others = (np.arange(count)[:, None] + 1 + rng.integers(0, len(noise) - 1, (count, inner))) % len(noise)
    taus = np.empty((count, inner))
    step = max(1, _CHUNK_ELEMENTS // (inner * truths.shape[1]))      # replicates at once, to bound memory
    for start in range(0, count, step):
        x = np.repeat(truths[start:start + step], inner, axis=0)
        taus[start:start + step] = correlation.kendall(x, x + noise[others[start:start + step].ravel()]).reshape(-1, inner)
    taus[np.ptp(truths, axis=1) == 0] = 0.0        # a constant truth: no difference beyond the noise
    finite = np.isfinite(taus)
    counted = finite.sum(axis=1)
    replicates = np.where(counted > 0, np.where(finite, taus, 0.0).sum(axis=1) / np.maximum(counted, 1), np.nan)
    defined = np.isfinite(replicates)
    if not math.isfinite(estimate) or defined.sum() < 2:
        return estimate, [math.nan, math.nan], np.full(count, np.nan)
    values = replicates[defined]
    deviations = replicates - values.mean()
    bias = float(values.mean()) - estimate
    low_q, high_q = bootstrap.tails
    low = estimate - bias - float(np.quantile(deviations[defined], high_q))
    high = estimate - bias - float(np.quantile(deviations[defined], low_q))
    low, high = max(0.0, min(low, estimate)), min(1.0, max(high, estimate))
    return estimate, [low, high], estimate - bias - deviations
