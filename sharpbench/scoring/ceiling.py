"""The noise ceiling: the Kendall tau that the models' true expected targets would reach against the observed
target, which no measure can be expected to beat when the target is measured on finite evaluation sets.

Estimator: split-half reliability, corrected to the full sets (the reliability-based ceilings of Brain-Score,
Schrimpf et al. 2018, "Brain-Score: Which Artificial Neural Network for Object Recognition is most Brain-Like?",
and of Lage-Castellanos et al. 2019, "Methods for computing the maximum performance of computational models of
fMRI responses", PLoS Comput. Biol.). Each set's examples are split into two random halves (the same split
for every model); tau_half = Kendall tau between the target on one half and the target on the other, averaged
over many splits. Through Greiner's relation for a bivariate normal, r = sin(pi tau / 2), the Spearman-Brown
formula (Spearman 1910, Brown 1910) gives the reliability of the full sets, rho = 2 r / (1 + r), the
correlation between two independent measurements of the target; the correlation of the true expected target
with one measurement is sqrt(rho), mapped back to tau = (2 / pi) arcsin(sqrt(rho)). A target that combines
sets (gen_gap: test and train; ood_error: several shifts) is split in each of its sets at once.

The interval: the same statistic on each two-way resample (models and examples drawn with replacement, one
random split per resample), as a percentile interval.

Checked by simulation (tests/test_ceiling.py): binomial test sets of 300, 1,000 and 10,000 examples, and one
with examples of varying difficulty, against the expectation over test sets of tau(true errors, observed).
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from sharpbench.scoring.metrics import Bootstrap
from sharpbench.scoring.pairs import Hparams, Pairs, multiplicities
from sharpbench.scoring.resampling import (OutcomeSet, ResampledMeans, Target, example_rng, needed_outcomes,
                                   resample_examples, target_values)

SPLITS = 200  # random split-halves averaged by the point estimate


def corrected_tau(tau_half: np.ndarray | float) -> np.ndarray:
    """The full-set ceiling from the split-half tau: (2/pi) arcsin(sqrt(Spearman-Brown(sin(pi tau / 2))));
    0 where the halves do not agree at all (tau_half <= 0), NaN where tau_half is NaN."""
    r = np.sin(np.pi * np.clip(np.asarray(tau_half, dtype=float), 0.0, 1.0) / 2)
    return 2 / np.pi * np.arcsin(np.sqrt(2 * r / (1 + r)))


def half_masks(rng: np.random.Generator, rows: int, examples: int) -> np.ndarray:
    """rows x examples masks, each a uniformly random half (floor(examples / 2)) of the examples."""
    # a loop of permutations: several times faster than Generator.permuted on a broadcast mask
    return np.stack([rng.permutation(examples) < examples // 2 for _ in range(rows)])


def _split_means(target: Target, sets: Mapping[str, OutcomeSet], splits: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The target on one half and on the other half of every set, for each random split: (splits, models) x 2."""
    halves: dict[tuple[str, str], np.ndarray] = {}
    others: dict[tuple[str, str], np.ndarray] = {}
    for name in target.sets:
        examples = sets[name].examples
        mask = half_masks(example_rng(Bootstrap(seed=seed), f"split/{name}"), splits, examples).astype(float)
        for kind in {kind for set_name, kind, _ in target.terms if set_name == name}:
            outcomes = np.asarray(getattr(sets[name], kind), dtype=float).T
            in_half = mask @ outcomes
            halves[(name, kind)] = in_half / (examples // 2)
            others[(name, kind)] = (outcomes.sum(axis=0) - in_half) / (examples - examples // 2)
    return target.combine(halves), target.combine(others)


def _pairs_tau(first: np.ndarray, second: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Kendall tau-b between two targets (rows: resamples) over the models drawn with ``counts``."""
    pairs = Pairs.of(np.zeros(first.shape[1]), {})
    sign_first, sign_second = pairs.target_sign(first), pairs.target_sign(second)
    weights = pairs.weights(counts)
    concordance = (weights * sign_first * sign_second).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return concordance / np.sqrt((weights * np.abs(sign_first)).sum(axis=1)
                                     * (weights * np.abs(sign_second)).sum(axis=1))


def split_half_estimate(target: Target, sets: Mapping[str, OutcomeSet], splits: int = SPLITS, seed: int = 0) -> float:
    """The ceiling from the mean split-half tau over ``splits`` random splits, corrected to the full sets."""
    first, second = _split_means(target, sets, splits, seed)
    taus = _pairs_tau(first, second, np.ones(first.shape))
    return float(corrected_tau(np.nanmean(taus))) if np.isfinite(taus).any() else math.nan


def ceiling_replicates(target: Target, means: Mapping[tuple[str, str], ResampledMeans],
                       indices: np.ndarray) -> np.ndarray:
    """The ceiling on each two-way resample (one split each): (resamples,)."""
    first = target.combine({key: value.half_a for key, value in means.items()})
    second = target.combine({key: value.half_b for key, value in means.items()})
    return corrected_tau(_pairs_tau(first, second, multiplicities(indices, first.shape[1])))


def noise_ceiling(target: Target, sets: Mapping[str, OutcomeSet], hparams: Hparams | None = None, *,
                  bootstrap: Bootstrap = Bootstrap()) -> tuple[float, list[float]]:
    """(estimate, [low, high]): the split-half noise ceiling of a target and its two-way percentile interval.

    ``hparams`` only checks that the outcomes have one row per model of the collection (the ceiling does not
    depend on hyperparameters)."""
    models = len(target_values(target, sets))
    for name, column in (hparams or {}).items():
        if len(column) != models:
            raise ValueError(f"hyperparameter '{name}' has {len(column)} values for {models} models")
    means = resample_examples(sets, needed_outcomes({"target": target}), bootstrap)
    replicates = ceiling_replicates(target, means, bootstrap.indices(models))
    return split_half_estimate(target, sets, seed=bootstrap.seed), list(bootstrap.interval(replicates))
