"""Ranking metrics: how well a measure's values order models by a generalization target.

Pure functions of numbers. Inputs: ``values`` (the measure, one per model), ``target`` (e.g. test error, one
per model) and ``hparams`` ({hyperparameter: one value per model}). The hyperparameter ``seed`` (which a
collection with several seeds adds) marks replicates, not a hyperparameter; hyperparameters with a single
value are left out too. Exact definitions (and where they depart from the papers) are in README.md,
"Scoring".

- Kendall tau-b and Spearman: scipy.stats.
- Granulated Kendall Psi (Jiang et al. 2020): for hyperparameter i, the groups are the models that agree on
  every other hyperparameter; Psi_i is the mean tau-b(values, target) over the groups where it is defined
  (at least one pair ordered on both sides), so an incomplete grid uses the groups that exist; Psi is the
  mean of the defined Psi_i.
- Conditional mutual information (the PGDL 2020 score): over ordered pairs of distinct models,
  V_mu = sign(mu_a - mu_b) and V_g = sign(g_a - g_b), each in {-1, 0, +1} (a tie is its own outcome);
  U_S = the values of the hyperparameters in S in both models; score_S = I(V_mu; V_g | U_S) / H(V_g | U_S)
  with the cells of U_S weighted by their number of pairs; the score is the minimum over every S of one or
  two hyperparameters.
- Robust sign error (Dziugaite et al. 2020): an environment is a pair of configurations (hyperparameters
  without the seed) that differ in exactly one hyperparameter; its error is the mean over the pairs of
  models across the two configurations of (1 - sign(d mu) sign(d g)) / 2 (a tie on either side costs
  1/2); reported as the mean and the maximum over environments.
- Bootstrap: percentile intervals over models resampled with replacement (seeded). Pairs of copies of one
  model carry no order and are left out of every pairwise metric; a resample in which a metric is undefined
  is left out of that metric's interval.

The pairwise metrics are computed by hand (not with scipy) on purpose: written as sums over pairs of models
weighted by their multiplicities, one matrix product evaluates a metric for every group and every bootstrap
resample at once; a per-call scipy.stats.kendalltau was about a hundred times slower in the bootstrap. The
tests check the hand-written tau-b against scipy.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import numpy as np
from scipy import sparse, special, stats

REPLICATE = "seed"
DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
_CHUNK_ELEMENTS = 4_000_000  # resamples x pairs evaluated per matrix product, to bound memory

Hparams = Mapping[str, Sequence[Hashable]]


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


def varied_hparams(hparams: Hparams) -> list[str]:
    """The hyperparameters that metrics condition on: every one with two or more values, except the seed."""
    return [name for name, column in hparams.items() if name != REPLICATE and len(set(column)) > 1]


def tau_vs_hparams(values: Sequence[float], hparams: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Kendall tau-b of the measure against each (numeric) hyperparameter: what the measure tracks."""
    return {name: kendall_tau(values, hparams[name]) for name in varied_hparams(hparams)}


# ---------------------------------------------------------------------------------- the pairwise machinery


def _codes(column: Sequence[Hashable]) -> np.ndarray:
    """Integer codes of a column's values (in order of first appearance)."""
    index: dict[Hashable, int] = {}
    return np.array([index.setdefault(value, len(index)) for value in column], dtype=np.int64)


def _joint_codes(columns: list[np.ndarray], n: int) -> np.ndarray:
    """One integer code per model for the tuple of its values in several coded columns."""
    if not columns:
        return np.zeros(n, dtype=np.int64)
    return np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)[1].reshape(-1)


def _one_hot(labels: np.ndarray, columns: int) -> sparse.csr_matrix:
    """pairs x columns indicator; a label of -1 belongs to no column."""
    rows = np.flatnonzero(labels >= 0)
    return sparse.csr_matrix((np.ones(len(rows)), (rows, labels[rows])), shape=(len(labels), columns))


def _sum_by(pair_terms: np.ndarray, indicator: sparse.csr_matrix) -> np.ndarray:
    """resamples x pairs -> resamples x columns: the sum of the terms over the pairs of each column."""
    return np.asarray((indicator.T @ pair_terms.T).T)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0."""
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean of the finite entries along an axis, NaN where there is none (no warning)."""
    finite = np.isfinite(x)
    return _ratio(np.where(finite, x, 0.0).sum(axis=axis), finite.sum(axis=axis).astype(float))


def _nanextreme(x: np.ndarray, axis: int, largest: bool) -> np.ndarray:
    """Maximum (or minimum) of the finite entries along an axis, NaN where there is none."""
    fill = -np.inf if largest else np.inf
    reduced = (np.max if largest else np.min)(np.where(np.isfinite(x), x, fill), axis=axis, initial=fill)
    return np.where(np.isfinite(reduced), reduced, np.nan)


@dataclass(frozen=True)
class _Pairs:
    """The unordered pairs (a < b) of models, their order signs, and the hyperparameter codes."""

    n: int
    first: np.ndarray
    second: np.ndarray
    value_sign: np.ndarray
    target_sign: np.ndarray
    codes: dict[str, np.ndarray]

    @classmethod
    def of(cls, values: Sequence[float], target: Sequence[float], hparams: Hparams) -> "_Pairs":
        values, target = np.asarray(values, dtype=float), np.asarray(target, dtype=float)
        if values.shape != target.shape or values.ndim != 1:
            raise ValueError(f"values and target must be two lists of equal length, got {values.shape} and "
                             f"{target.shape}")
        for name, column in hparams.items():
            if len(column) != len(values):
                raise ValueError(f"hyperparameter '{name}' has {len(column)} values for {len(values)} models")
        first, second = np.triu_indices(len(values), k=1)
        return cls(len(values), first, second, np.sign(values[first] - values[second]), np.sign(target[first] - target[second]),
                   {name: _codes(hparams[name]) for name in varied_hparams(hparams)})

    def weights(self, multiplicities: np.ndarray) -> np.ndarray:
        """resamples x models multiplicities -> resamples x pairs weights (copies of one model form no pair)."""
        return multiplicities[:, self.first] * multiplicities[:, self.second]

    def grouped_tau(self, pair_weights: np.ndarray, labels: np.ndarray, groups: int) -> np.ndarray:
        """Kendall tau-b within each group of pairs (label -1: no group): resamples x groups, NaN if undefined."""
        indicator = _one_hot(labels, groups)
        concordance = _sum_by(pair_weights * (self.value_sign * self.target_sign), indicator)
        ordered_values = _sum_by(pair_weights * np.abs(self.value_sign), indicator)
        ordered_target = _sum_by(pair_weights * np.abs(self.target_sign), indicator)
        return _ratio(concordance, np.sqrt(ordered_values * ordered_target))


# ----------------------------------------------------------------------------------- pairwise metrics


@dataclass(frozen=True)
class GranulatedKendall:
    """Psi (the mean over hyperparameters), Psi_i per hyperparameter, and how many groups gave each Psi_i."""

    mean: float
    per_hparam: dict[str, float]
    groups: dict[str, int]


@dataclass(frozen=True)
class ConditionalMI:
    """The conditional-mutual-information score and the hyperparameters it is conditioned on at the minimum."""

    value: float
    condition: tuple[str, ...]


@dataclass(frozen=True)
class SignError:
    """Robust sign error: mean and worst case over environments, and how many environments there were."""

    mean: float
    max: float
    environments: int


def _granulated(pairs: _Pairs, pair_weights: np.ndarray) -> dict[str, np.ndarray]:
    """Psi_i for each hyperparameter (resamples,), and the number of defined groups of each (resamples,)."""
    out: dict[str, np.ndarray] = {}
    for name in pairs.codes:
        others = [codes for other, codes in pairs.codes.items() if other != name]
        group = _joint_codes(others, pairs.n)
        labels = np.where(group[pairs.first] == group[pairs.second], group[pairs.first], -1)
        taus = pairs.grouped_tau(pair_weights, labels, int(group.max()) + 1 if len(group) else 0)
        out[name] = _nanmean(taus, axis=1)
        out[f"{name}/groups"] = np.isfinite(taus).sum(axis=1)
    return out


def granulated_kendall(values: Sequence[float], target: Sequence[float], hparams: Hparams) -> GranulatedKendall:
    """Granulated Kendall Psi over the groups of models that differ only in one hyperparameter."""
    pairs = _Pairs.of(values, target, hparams)
    result = _granulated(pairs, pairs.weights(np.ones((1, pairs.n))))
    return GranulatedKendall(float(_psi(result, list(pairs.codes), 1)[0]),
                             {name: float(result[name][0]) for name in pairs.codes},
                             {name: int(result[f"{name}/groups"][0]) for name in pairs.codes})


def _psi(granulated: dict[str, np.ndarray], names: list[str], resamples: int) -> np.ndarray:
    """Psi: the mean of the defined Psi_i, per resample."""
    if not names:
        return np.full(resamples, np.nan)
    return _nanmean(np.stack([granulated[name] for name in names], axis=1), axis=1)


def _condition_sets(names: list[str]) -> list[tuple[str, ...]]:
    """Every set of one or two hyperparameters (the 'self-pairs' (h, h) are the single ones)."""
    return [(name,) for name in names] + list(itertools.combinations(names, 2))


def _conditional_mi(pairs: _Pairs, pair_weights: np.ndarray, condition: tuple[str, ...]) -> np.ndarray:
    """I(V_mu; V_g | U) / H(V_g | U) for each resample, over ordered pairs of distinct models."""
    u = _joint_codes([pairs.codes[name] for name in condition], pairs.n)
    cells = int(u.max()) + 1
    # Each unordered pair stands for two ordered ones: (a, b) with signs (s, t), (b, a) with (-s, -t).
    forward = (u[pairs.first] * cells + u[pairs.second]) * 9 + (pairs.value_sign + 1) * 3 + pairs.target_sign + 1
    backward = (u[pairs.second] * cells + u[pairs.first]) * 9 + (1 - pairs.value_sign) * 3 + 1 - pairs.target_sign
    indicator = _one_hot(forward.astype(np.int64), cells * cells * 9) + _one_hot(backward.astype(np.int64),
                                                                                 cells * cells * 9)
    table = _sum_by(pair_weights, indicator).reshape(len(pair_weights), cells * cells, 3, 3)
    per_cell = table.sum(axis=(2, 3), keepdims=True)
    value_margin = table.sum(axis=3, keepdims=True)
    target_margin = table.sum(axis=2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(table > 0, table * per_cell / (value_margin * target_margin), 1.0)
        target_given_cell = np.where(target_margin > 0, target_margin / per_cell, 1.0)
    information = special.xlogy(table, ratio).sum(axis=(1, 2, 3))
    entropy = -special.xlogy(target_margin, target_given_cell).sum(axis=(1, 2, 3))
    return _ratio(information, entropy)


def conditional_mutual_information(values: Sequence[float], target: Sequence[float],
                                   hparams: Hparams) -> ConditionalMI:
    """The PGDL score: the minimum over sets of one or two hyperparameters of I(V_mu; V_g | U) / H(V_g | U)."""
    pairs = _Pairs.of(values, target, hparams)
    weights = pairs.weights(np.ones((1, pairs.n)))
    scores = {condition: float(_conditional_mi(pairs, weights, condition)[0])
              for condition in _condition_sets(list(pairs.codes))}
    defined = {condition: score for condition, score in scores.items() if math.isfinite(score)}
    if not defined:
        return ConditionalMI(math.nan, ())
    condition = min(defined, key=defined.__getitem__)
    return ConditionalMI(defined[condition], condition)


def _environments(pairs: _Pairs) -> tuple[np.ndarray, int]:
    """Environment label of each pair (-1: its models' configurations do not differ in exactly one
    hyperparameter), and the number of environments."""
    differing = sum((codes[pairs.first] != codes[pairs.second]).astype(int) for codes in pairs.codes.values())
    config = _joint_codes(list(pairs.codes.values()), pairs.n)
    low = np.minimum(config[pairs.first], config[pairs.second])
    high = np.maximum(config[pairs.first], config[pairs.second])
    in_environment = np.asarray(differing) == 1
    labels = np.full(len(pairs.first), -1, dtype=np.int64)
    if not in_environment.any():
        return labels, 0
    found, labels[in_environment] = np.unique(np.stack([low, high], axis=1)[in_environment], axis=0,
                                              return_inverse=True)
    return labels, len(found)


def _sign_errors(pairs: _Pairs, pair_weights: np.ndarray, labels: np.ndarray, environments: int) -> np.ndarray:
    """The sign error of every environment: resamples x environments, NaN where an environment is absent."""
    indicator = _one_hot(labels, environments)
    loss = _sum_by(pair_weights * (1 - pairs.value_sign * pairs.target_sign) / 2, indicator)
    return _ratio(loss, _sum_by(pair_weights, indicator))


def sign_error(values: Sequence[float], target: Sequence[float], hparams: Hparams) -> SignError:
    """Robust sign error over environments (pairs of configurations differing in one hyperparameter)."""
    pairs = _Pairs.of(values, target, hparams)
    labels, environments = _environments(pairs)
    errors = _sign_errors(pairs, pairs.weights(np.ones((1, pairs.n))), labels, environments)[0]
    if not environments:
        return SignError(math.nan, math.nan, 0)
    return SignError(float(errors.mean()), float(errors.max()), environments)


# -------------------------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class Bootstrap:
    """Percentile bootstrap over models: how many resamples, the seed of their draw, the interval's level."""

    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0
    level: float = DEFAULT_LEVEL

    def indices(self, n: int) -> np.ndarray:
        """resamples x n indices of models drawn with replacement (the same for every target)."""
        return np.random.default_rng(self.seed).integers(0, n, size=(self.resamples, n))

    def interval(self, replicates: np.ndarray) -> tuple[float, float]:
        """The percentile interval of the defined (finite) replicates; (NaN, NaN) when there is none."""
        finite = replicates[np.isfinite(replicates)]
        if not len(finite):
            return math.nan, math.nan
        tail = (1 - self.level) / 2 * 100
        low, high = np.percentile(finite, [tail, 100 - tail])
        return float(low), float(high)


def _spearman_rows(values: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row pair (average ranks), NaN for a constant row."""
    ranks_x = stats.rankdata(values, axis=1)
    ranks_y = stats.rankdata(target, axis=1)
    ranks_x -= ranks_x.mean(axis=1, keepdims=True)
    ranks_y -= ranks_y.mean(axis=1, keepdims=True)
    return _ratio((ranks_x * ranks_y).sum(axis=1),
                  np.sqrt((ranks_x ** 2).sum(axis=1) * (ranks_y ** 2).sum(axis=1)))


def bootstrap_replicates(values: Sequence[float], target: Sequence[float], hparams: Hparams,
                         bootstrap: Bootstrap = Bootstrap(), expected_sign: int = 1) -> dict[str, np.ndarray]:
    """Every metric on every bootstrap resample of the models: {metric: (resamples,)}.

    Keys: kendall_tau, spearman, granulated_kendall, granulated_kendall/<hparam>, conditional_mi,
    sign_error_mean, sign_error_max. ``expected_sign`` orients the sign error (see `score_target`)."""
    values, target = np.asarray(values, dtype=float), np.asarray(target, dtype=float)
    pairs = _Pairs.of(values, target, hparams)
    oriented = _Pairs.of(expected_sign * values, target, hparams)
    labels, environments = _environments(oriented)
    indices = bootstrap.indices(len(values))
    chunk = max(1, _CHUNK_ELEMENTS // max(1, len(pairs.first)))
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, bootstrap.resamples, chunk):
        rows = indices[start:start + chunk]
        multiplicities = np.zeros((len(rows), len(values)))
        np.add.at(multiplicities, (np.arange(len(rows))[:, None], rows), 1.0)
        weights = pairs.weights(multiplicities)
        granulated = _granulated(pairs, weights)
        conditional = [_conditional_mi(pairs, weights, condition) for condition in _condition_sets(list(pairs.codes))]
        errors = _sign_errors(oriented, weights, labels, environments)
        part = {
            "kendall_tau": pairs.grouped_tau(weights, np.zeros(len(pairs.first), dtype=np.int64), 1)[:, 0],
            "spearman": _spearman_rows(values[rows], target[rows]),
            "granulated_kendall": _psi(granulated, list(pairs.codes), len(rows)),
            **{f"granulated_kendall/{name}": granulated[name] for name in pairs.codes},
            "conditional_mi": _nanextreme(np.stack(conditional, axis=1), axis=1, largest=False) if conditional
            else np.full(len(rows), np.nan),
            "sign_error_mean": _nanmean(errors, axis=1),
            "sign_error_max": _nanextreme(errors, axis=1, largest=True),
        }
        parts.append(part)
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
