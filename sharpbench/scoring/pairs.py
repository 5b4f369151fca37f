"""Pairs of models as the unit of every pairwise metric, in a form that scores many resamples at once.

A pairwise metric is a sum over the unordered pairs (a < b) of models of terms that depend on the order of
the two models on the measure (a fixed sign per pair) and on the target (a sign per pair and per resample:
a resample of test examples can reorder two models), each pair weighted by the product of the two models'
multiplicities in a resample of models. Summing such terms over groups of pairs is one sparse matrix product
for every group and every resample at once; a per-resample call to scipy.stats was about a hundred times
slower, which is why these sums are written by hand (the tests check them against scipy and plain loops).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import numpy as np
from scipy import sparse

REPLICATE = "seed"

Hparams = Mapping[str, Sequence[Hashable]]


def varied_hparams(hparams: Hparams) -> list[str]:
    """The hyperparameters that metrics condition on: every one with two or more values, except the seed."""
    return [name for name, column in hparams.items() if name != REPLICATE and len(set(column)) > 1]


def codes(column: Sequence[Hashable]) -> np.ndarray:
    """Integer codes of a column's values (in order of first appearance)."""
    index: dict[Hashable, int] = {}
    return np.array([index.setdefault(value, len(index)) for value in column], dtype=np.int64)


def joint_codes(columns: list[np.ndarray], n: int) -> np.ndarray:
    """One integer code per model for the tuple of its values in several coded columns."""
    if not columns:
        return np.zeros(n, dtype=np.int64)
    return np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)[1].reshape(-1)


def one_hot(labels: np.ndarray, columns: int) -> sparse.csr_matrix:
    """items x columns indicator; a label of -1 belongs to no column."""
    rows = np.flatnonzero(labels >= 0)
    return sparse.csr_matrix((np.ones(len(rows)), (rows, labels[rows])), shape=(len(labels), columns))


def sum_by(terms: np.ndarray, indicator: sparse.csr_matrix) -> np.ndarray:
    """resamples x items -> resamples x columns: the sum of the terms over the items of each column."""
    return np.asarray((indicator.T @ np.asarray(terms).T).T)


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0."""
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean of the finite entries along an axis, NaN where there is none (no warning)."""
    finite = np.isfinite(x)
    return ratio(np.where(finite, x, 0.0).sum(axis=axis), finite.sum(axis=axis).astype(float))


def nanmin(x: np.ndarray, axis: int) -> np.ndarray:
    """Minimum of the finite entries along an axis, NaN where there is none."""
    reduced = np.min(np.where(np.isfinite(x), x, np.inf), axis=axis, initial=np.inf)
    return np.where(np.isfinite(reduced), reduced, np.nan)


def multiplicities(indices: np.ndarray, n: int) -> np.ndarray:
    """resamples x n draws of models -> resamples x n counts of each model."""
    counts = np.zeros((len(indices), n))
    np.add.at(counts, (np.arange(len(indices))[:, None], indices), 1.0)
    return counts


@dataclass(frozen=True)
class Pairs:
    """The unordered pairs (a < b) of models, the measure's order sign of each, and the codes of the
    hyperparameters that metrics condition on (`varied_hparams`)."""

    n: int
    first: np.ndarray
    second: np.ndarray
    value_sign: np.ndarray
    codes: dict[str, np.ndarray]

    @classmethod
    def of(cls, values: Sequence[float], hparams: Hparams) -> "Pairs":
        """The pairs of ``values`` (one per model); ``hparams`` gives one value per model for each name."""
        values = np.asarray(values, dtype=float)
        if values.ndim != 1:
            raise ValueError(f"values must be one list of numbers, got shape {values.shape}")
        for name, column in hparams.items():
            if len(column) != len(values):
                raise ValueError(f"hyperparameter '{name}' has {len(column)} values for {len(values)} models")
        first, second = np.triu_indices(len(values), k=1)
        return cls(len(values), first, second, np.sign(values[first] - values[second]),
                   {name: codes(hparams[name]) for name in varied_hparams(hparams)})

    def target_sign(self, targets: np.ndarray) -> np.ndarray:
        """resamples x models targets (or models,) -> resamples x pairs signs of target_a - target_b."""
        targets = np.atleast_2d(np.asarray(targets, dtype=float))
        if targets.shape[1] != self.n:
            raise ValueError(f"a target has {targets.shape[1]} values for {self.n} models")
        return np.sign(targets[:, self.first] - targets[:, self.second])

    def weights(self, counts: np.ndarray) -> np.ndarray:
        """resamples x models multiplicities -> resamples x pairs weights (copies of one model form no pair)."""
        return counts[:, self.first] * counts[:, self.second]

    def grouped_tau(self, pair_weights: np.ndarray, target_sign: np.ndarray, labels: np.ndarray,
                    groups: int) -> np.ndarray:
        """Kendall tau-b within each group of pairs (label -1: no group): resamples x groups, NaN if undefined."""
        indicator = one_hot(labels, groups)
        concordance = sum_by(pair_weights * (self.value_sign * target_sign), indicator)
        ordered_values = sum_by(pair_weights * np.abs(self.value_sign), indicator)
        ordered_target = sum_by(pair_weights * np.abs(target_sign), indicator)
        return ratio(concordance, np.sqrt(ordered_values * ordered_target))

    def by_target_sign(self, pair_weights: np.ndarray, target_sign: np.ndarray) -> dict[int, np.ndarray]:
        """The pair weights split by the target's sign: {-1, 0, +1: resamples x pairs}."""
        return {t: pair_weights * (target_sign == t) for t in (-1, 0, 1)}

    def cells(self, condition: tuple[str, ...]) -> tuple[np.ndarray, int]:
        """Each model's code for the joint values of the hyperparameters in ``condition``, and how many codes."""
        u = joint_codes([self.codes[name] for name in condition], self.n)
        return u, int(u.max()) + 1 if self.n else 1

    def sign_table(self, by_sign: dict[int, np.ndarray], condition: tuple[str, ...]) -> np.ndarray:
        """Over ordered pairs (a, b) of distinct models: measure sign (-1, 0, +1) x target sign (-1, 0, +1) x
        resamples x (cell of a, cell of b), the summed pair weights; a cell is the joint value of the
        hyperparameters in ``condition``. Each unordered pair stands for (a, b) with signs (s, t) and (b, a)
        with (-s, -t). The sign axes come first so that sums over them add whole arrays (much faster than
        reducing short trailing axes)."""
        u, cells = self.cells(condition)
        sign = self.value_sign.astype(np.int64)
        forward = one_hot((sign + 1) * cells * cells + u[self.first] * cells + u[self.second], 3 * cells * cells)
        backward = one_hot((1 - sign) * cells * cells + u[self.second] * cells + u[self.first], 3 * cells * cells)
        resamples = len(by_sign[0])
        table = np.zeros((3, 3, resamples, cells * cells))
        for t, selected in by_sign.items():
            table[:, t + 1] += sum_by(selected, forward).reshape(resamples, 3, cells * cells).transpose(1, 0, 2)
            table[:, 1 - t] += sum_by(selected, backward).reshape(resamples, 3, cells * cells).transpose(1, 0, 2)
        return table

    def tau(self, pair_weights: np.ndarray, target_sign: np.ndarray) -> np.ndarray:
        """Kendall tau-b over all pairs: (resamples,)."""
        return self.grouped_tau(pair_weights, target_sign, np.zeros(len(self.first), dtype=np.int64), 1)[:, 0]
