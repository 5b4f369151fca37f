"""Ranking metrics: how well a measure's values order models by a generalization target.

Pure functions of numbers. Inputs: ``values`` (the measure, one per model), ``target`` (e.g. test error, one
per model) and ``hparams`` ({hyperparameter: one value per model}). The hyperparameter ``seed`` (which a
collection with several seeds adds) marks replicates, not a hyperparameter; hyperparameters with a single
value are left out too. Exact definitions (and where they depart from the papers) are in docs/scoring.md.

- Kendall tau-b and Spearman: scipy.stats.
- Granulated Kendall Psi (Jiang et al. 2020): for hyperparameter i, the groups are the models that agree on
  every other hyperparameter; Psi_i is the mean tau-b(values, target) over the groups where it is defined,
  over the pairs of a group that differ in hyperparameter i (two models that differ only in their seed carry
  no information about i and are left out); Psi is the mean of the defined Psi_i.
- Conditional mutual information, this project's variant (`conditional_mi`): over ordered pairs of distinct
  models, V_mu = sign(mu_a - mu_b) and V_g = sign(g_a - g_b), each in {-1, 0, +1}; U_S = the values of the
  hyperparameters in S in both models; score_S = I(V_mu; V_g | U_S) / H(V_g | U_S) with the cells of U_S
  weighted by their number of pairs; the minimum over every S of one or two hyperparameters. PGDL's own
  computation is `sharpbench.scoring.pgdl`.
- Replicates: every metric on each resample, given which models each resample draws and the target of each
  resample (one target for a resample of models only; one per resample when test examples are resampled
  too, see `sharpbench.scoring.resampling`). Pairs of copies of one model carry no order and are left out; a
  resample on which a metric is undefined gives NaN.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import special, stats

from sharpbench.scoring import pgdl
from sharpbench.scoring.pgdl import ConditionalMI
from sharpbench.scoring.pairs import Hparams, Pairs, joint_codes, multiplicities, nanmean, nanmin, ratio, varied_hparams

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
_CHUNK_ELEMENTS = 4_000_000  # resamples x pairs evaluated per matrix product, to bound memory

__all__ = ["Bootstrap", "ConditionalMI", "GranulatedKendall", "Hparams", "bootstrap_replicates",
           "conditional_mutual_information", "granulated_kendall", "kendall_tau", "metric_replicates", "spearman",
           "tau_vs_hparams", "varied_hparams"]


# ------------------------------------------------------------------------------------------ plain scores


def kendall_tau(values: Sequence[float], target: Sequence[float]) -> float:
    """Kendall tau-b (ties handled); NaN when either side is constant or there are fewer than 2 models."""
    if len(values) < 2:
        return math.nan
    return float(stats.kendalltau(values, target, variant="b").statistic)


def spearman(values: Sequence[float], target: Sequence[float]) -> float:
    """Spearman rank correlation (ties get average ranks); NaN when either side is constant."""
    if len(values) < 2 or len(set(values)) < 2 or len(set(target)) < 2:
        return math.nan
    return float(stats.spearmanr(values, target).statistic)


def tau_vs_hparams(values: Sequence[float], hparams: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Kendall tau-b of the measure against each (numeric) hyperparameter: what the measure tracks."""
    return {name: kendall_tau(values, hparams[name]) for name in varied_hparams(hparams)}


# ----------------------------------------------------------------------------------- pairwise metrics


@dataclass(frozen=True)
class GranulatedKendall:
    """Psi (the mean over hyperparameters), Psi_i per hyperparameter, and how many groups gave each Psi_i."""

    mean: float
    per_hparam: dict[str, float]
    groups: dict[str, int]


def _granulated(pairs: Pairs, pair_weights: np.ndarray, target_sign: np.ndarray) -> dict[str, np.ndarray]:
    """Psi_i for each hyperparameter (resamples,), and the number of defined groups of each (resamples,)."""
    out: dict[str, np.ndarray] = {}
    for name, own in pairs.codes.items():
        group = joint_codes([codes for other, codes in pairs.codes.items() if other != name], pairs.n)
        in_group = (group[pairs.first] == group[pairs.second]) & (own[pairs.first] != own[pairs.second])
        labels = np.where(in_group, group[pairs.first], -1)
        taus = pairs.grouped_tau(pair_weights, target_sign, labels, int(group.max()) + 1)
        out[name] = nanmean(taus, axis=1)
        out[f"{name}/groups"] = np.isfinite(taus).sum(axis=1)
    return out


def _psi(granulated: dict[str, np.ndarray], names: list[str], resamples: int) -> np.ndarray:
    """Psi: the mean of the defined Psi_i, per resample."""
    if not names:
        return np.full(resamples, np.nan)
    return nanmean(np.stack([granulated[name] for name in names], axis=1), axis=1)


def granulated_kendall(values: Sequence[float], target: Sequence[float], hparams: Hparams) -> GranulatedKendall:
    """Granulated Kendall Psi over the groups of models that differ only in one hyperparameter."""
    pairs = Pairs.of(values, hparams)
    result = _granulated(pairs, pairs.weights(np.ones((1, pairs.n))), pairs.target_sign(target))
    return GranulatedKendall(float(_psi(result, list(pairs.codes), 1)[0]),
                             {name: float(result[name][0]) for name in pairs.codes},
                             {name: int(result[f"{name}/groups"][0]) for name in pairs.codes})


def _condition_sets(names: list[str]) -> list[tuple[str, ...]]:
    """Every set of one or two hyperparameters (the 'self-pairs' (h, h) are the single ones)."""
    return [(name,) for name in names] + list(itertools.combinations(names, 2))


def _conditional_mi(table: np.ndarray) -> np.ndarray:
    """I(V_mu; V_g | U) / H(V_g | U) for each resample, from `Pairs.sign_table`."""
    # In counts (c log c summed over a table's entries, no division per cell): N I(V_mu; V_g | U) =
    # sum c(u, v, t) log c(u, v, t) - sum c(u, v) log c(u, v) - sum c(u, t) log c(u, t) + sum c(u) log c(u),
    # and N H(V_g | U) = sum c(u) log c(u) - sum c(u, t) log c(u, t).
    cell = _clogc(table.sum(axis=(0, 1)))
    target_part = _clogc(table.sum(axis=0))
    information = _clogc(table) - _clogc(table.sum(axis=1)) - target_part + cell
    entropy = cell - target_part
    # rounding leaves about 1e-16 of the total where the entropy is exactly 0: that is undefined, not 0/tiny
    total = table.sum(axis=(0, 1)).sum(axis=-1)
    return ratio(information, np.where(entropy > 1e-9 * total, entropy, 0.0))


def _clogc(counts: np.ndarray) -> np.ndarray:
    """Per resample, the sum of c log c over ``counts`` (leading sign axes, then resamples, then cells)."""
    terms = special.xlogy(counts, counts)
    return terms.reshape(-1, *terms.shape[-2:]).sum(axis=0).sum(axis=-1)


def _minimum(scores: dict[tuple[str, ...], np.ndarray], resamples: int) -> np.ndarray:
    """The minimum over conditions of the defined scores, per resample (NaN when none is defined)."""
    if not scores:
        return np.full(resamples, np.nan)
    return nanmin(np.stack(list(scores.values()), axis=1), axis=1)


def conditional_mutual_information(values: Sequence[float], target: Sequence[float],
                                   hparams: Hparams) -> ConditionalMI:
    """This project's CMI: the minimum over sets of one or two hyperparameters of I(V_mu; V_g | U) / H(V_g | U)."""
    pairs = Pairs.of(values, hparams)
    by_sign = pairs.by_target_sign(pairs.weights(np.ones((1, pairs.n))), pairs.target_sign(target))
    return pgdl.smallest({condition: _conditional_mi(pairs.sign_table(by_sign, condition))
                          for condition in _condition_sets(list(pairs.codes))})


# -------------------------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class Bootstrap:
    """Percentile bootstrap: how many resamples, the seed of their draw, the interval's level."""

    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0
    level: float = DEFAULT_LEVEL

    def indices(self, n: int) -> np.ndarray:
        """resamples x n indices of models drawn with replacement (the same for every target and measure)."""
        return np.random.default_rng(self.seed).integers(0, n, size=(self.resamples, n))

    def interval(self, replicates: np.ndarray) -> tuple[float, float]:
        """The percentile interval of the defined (finite) replicates; (NaN, NaN) when there is none."""
        finite = replicates[np.isfinite(replicates)]
        if not len(finite):
            return math.nan, math.nan
        tail = (1 - self.level) / 2 * 100
        low, high = np.percentile(finite, [tail, 100 - tail])
        return float(low), float(high)

    def basic_interval(self, replicates: np.ndarray, estimate: float,
                       bounds: tuple[float, float] = (-1.0, 1.0)) -> tuple[float, float]:
        """The basic bootstrap interval [2 estimate - high, 2 estimate - low] of the percentile interval
        [low, high] (Davison and Hinkley 1997, eq. 5.6), clipped to the metric's range ``bounds``.

        Used for resamples of test examples: a resampled target carries the test set's noise twice (once from
        the test set, once from the resample), which pulls a rank correlation toward 0 about as far again as the
        test set's noise pulled the estimate; the percentile interval then sits on the wrong side of the
        estimate (it covered the true tau in 46% of simulations with 300 test examples), the basic interval
        reflects that shift back (see tests/test_coverage.py)."""
        low, high = self.interval(replicates)
        if not (math.isfinite(estimate) and math.isfinite(low)):
            return math.nan, math.nan
        return (float(np.clip(2 * estimate - high, *bounds)), float(np.clip(2 * estimate - low, *bounds)))


def _spearman_rows(values: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row pair (average ranks), NaN for a constant row."""
    ranks_x = stats.rankdata(values, axis=1)
    ranks_y = stats.rankdata(target, axis=1)
    ranks_x -= ranks_x.mean(axis=1, keepdims=True)
    ranks_y -= ranks_y.mean(axis=1, keepdims=True)
    return ratio((ranks_x * ranks_y).sum(axis=1), np.sqrt((ranks_x ** 2).sum(axis=1) * (ranks_y ** 2).sum(axis=1)))


def _chunk_replicates(pairs: Pairs, values: np.ndarray, targets: np.ndarray, rows: np.ndarray,
                      orientation: int) -> dict[str, np.ndarray]:
    """Every metric on the resamples ``rows`` (resamples x drawn models) with ``targets`` (resamples or 1 x models)."""
    counts = multiplicities(rows, pairs.n)
    weights = pairs.weights(counts)
    target_sign = pairs.target_sign(targets)
    granulated = _granulated(pairs, weights, target_sign)
    by_sign = pairs.by_target_sign(weights, target_sign)
    tables = {condition: pairs.sign_table(by_sign, condition)
              for condition in set(_condition_sets(list(pairs.codes))) | set(pgdl.condition_sets(list(pairs.codes)))}
    drawn_targets = np.take_along_axis(np.broadcast_to(targets, (len(rows), pairs.n)), rows, axis=1)
    return {
        "kendall_tau": pairs.tau(weights, target_sign),
        "spearman": _spearman_rows(values[rows], drawn_targets),
        "granulated_kendall": _psi(granulated, list(pairs.codes), len(rows)),
        **{f"granulated_kendall/{name}": granulated[name] for name in pairs.codes},
        "conditional_mi": _minimum({condition: _conditional_mi(tables[condition])
                                    for condition in _condition_sets(list(pairs.codes))}, len(rows)),
        "conditional_mi_pgdl": _minimum({condition: pgdl.score(pairs, tables[condition], counts, condition, orientation)
                                         for condition in pgdl.condition_sets(list(pairs.codes))}, len(rows)),
    }


def metric_replicates(values: Sequence[float], targets: np.ndarray, hparams: Hparams, indices: np.ndarray,
                      orientation: int = 1) -> dict[str, np.ndarray]:
    """Every metric on every resample: {metric: (resamples,)}.

    ``indices`` (resamples x models) are the models each resample draws; ``targets`` is the target of each
    resample over all models (resamples x models), or one target (models,) shared by every resample.
    ``orientation`` (+1: higher means worse) orients the measure for PGDL's CMI, which reads the measure as
    a complexity. Keys: kendall_tau, spearman, granulated_kendall, granulated_kendall/<hparam>,
    conditional_mi, conditional_mi_pgdl."""
    values = np.asarray(values, dtype=float)
    targets = np.atleast_2d(np.asarray(targets, dtype=float))
    if targets.shape[0] not in (1, len(indices)):
        raise ValueError(f"{targets.shape[0]} targets for {len(indices)} resamples")
    pairs = Pairs.of(values, hparams)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, len(pairs.first)))
    parts = [_chunk_replicates(pairs, values, targets if len(targets) == 1 else targets[start:start + chunk],
                               indices[start:start + chunk], orientation)
             for start in range(0, len(indices), chunk)]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def bootstrap_replicates(values: Sequence[float], target: Sequence[float], hparams: Hparams,
                         bootstrap: Bootstrap = Bootstrap(), orientation: int = 1) -> dict[str, np.ndarray]:
    """Every metric on every resample of the models only (the target held fixed): {metric: (resamples,)}."""
    return metric_replicates(values, np.asarray(target, dtype=float), hparams, bootstrap.indices(len(values)),
                             orientation)
