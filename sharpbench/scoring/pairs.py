"""Pairs of models as the unit of the pairwise metrics (granulated Kendall, the conditional mutual informations),
in a form that scores many resamples at once.

A pairwise metric is a sum over unordered pairs (a < b) of terms that depend on the order of the two models on the
measure (a fixed sign per pair) and on the target (a sign per pair and resample), each pair weighted by the product
of the two models' multiplicities in a resample of models. Summing such terms over groups of pairs is one sparse
matrix product for every group and every resample at once (Psi's groups, the coarser CMI tables), and the CMIs'
sign tables are counted by the compiled kernel of :mod:`sharpbench.scoring._pair_kernels`; a per-resample call to
scipy.stats was about a hundred times slower, which is why these sums are written by hand (the tests check them
against scipy and plain loops).

Which pairs: the granulated Kendall reads the pairs within groups of models that agree on every hyperparameter but
one, the conditional mutual informations every pair; each reads all of them up to ``PAIR_SAMPLE`` pairs and above
that a seeded uniform sample of that many (an incomplete U-statistic, Blom 1976), each sampled pair standing for
(all pairs / sampled pairs) of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Mapping, Sequence

import numpy as np
from scipy import sparse

from sharpbench.scoring import _pair_kernels

REPLICATE = "seed"
PAIR_SAMPLE = 50_000

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


def pairs_within(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (a < b) of models with the same label (labels >= 0), in O(pairs)."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sizes = np.diff(np.r_[starts, len(labels)])
    firsts, seconds = [], []
    for size in np.unique(sizes[sizes > 1]):
        i, j = np.triu_indices(int(size), k=1)
        offsets = starts[sizes == size]
        firsts.append(order[(offsets[:, None] + i[None]).ravel()])
        seconds.append(order[(offsets[:, None] + j[None]).ravel()])
    if not firsts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    first, second = np.concatenate(firsts), np.concatenate(seconds)
    return np.minimum(first, second), np.maximum(first, second)


def coupled(codes: dict[str, np.ndarray], name: str, n: int, limit: int = PAIR_SAMPLE,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of models that agree on every conditioned hyperparameter but ``name`` and differ in it (the pairs
    of the granulated Kendall's groups and of the robust sign error's environments), and each pair's group (the
    values of the others); above ``limit`` pairs, ``limit`` of them drawn uniformly with replacement (seeded),
    without listing them all (at 50,000 models a family holds some 30 million)."""
    group = joint_codes([column for other, column in codes.items() if other != name], n)
    within = joint_codes([group, codes[name]], n)          # the models of a group that share `name`'s value
    sizes, equal = np.bincount(group).astype(np.int64), np.bincount(within).astype(np.int64)
    if int((sizes * (sizes - 1) // 2).sum() - (equal * (equal - 1) // 2).sum()) <= limit:
        first, second = pairs_within(group)
        keep = codes[name][first] != codes[name][second]
        return first[keep], second[keep], group[first[keep]]
    # a group with the chance of its pairs, two distinct members of it at random, and a redraw where they share
    # `name`'s value: uniform over the coupled pairs
    order = np.argsort(group, kind="stable")
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    chance = (sizes * (sizes - 1)).astype(float)
    rng = np.random.default_rng([seed, n, limit])
    first, second = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    while len(first) < limit:
        drawn = rng.choice(len(sizes), 2 * (limit - len(first)), p=chance / chance.sum())
        a = rng.integers(0, sizes[drawn])
        b = rng.integers(0, sizes[drawn] - 1)
        a, b = order[starts[drawn] + a], order[starts[drawn] + b + (b >= a)]
        keep = codes[name][a] != codes[name][b]
        first = np.r_[first, np.minimum(a, b)[keep]][:limit]
        second = np.r_[second, np.maximum(a, b)[keep]][:limit]
    return first, second, group[first]


@dataclass(frozen=True)
class Pairs:
    """A set of pairs (a < b) of models, the measure's order sign of each, the codes of the hyperparameters that
    metrics condition on (`varied_hparams`), and how many pairs of the population each stands for."""

    n: int
    first: np.ndarray
    second: np.ndarray
    value_sign: np.ndarray
    codes: dict[str, np.ndarray]
    scale: float = 1.0
    _cells: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, values: Sequence[float], hparams: Hparams, first: np.ndarray | None = None,
           second: np.ndarray | None = None, scale: float = 1.0) -> "Pairs":
        """The pairs (``first``, ``second``; default every pair) of ``values``; ``hparams`` gives one value per
        model for each name."""
        values = np.asarray(values, dtype=float)
        if values.ndim != 1:
            raise ValueError(f"values must be one list of numbers, got shape {values.shape}")
        for name, column in hparams.items():
            if len(column) != len(values):
                raise ValueError(f"hyperparameter '{name}' has {len(column)} values for {len(values)} models")
        if first is None or second is None:
            first, second = np.triu_indices(len(values), k=1)
        return cls(len(values), first, second, np.sign(values[first] - values[second]),
                   {name: codes(hparams[name]) for name in varied_hparams(hparams)}, scale)

    @classmethod
    def every_or_sample(cls, values: Sequence[float], hparams: Hparams, limit: int = PAIR_SAMPLE,
                        seed: int = 0) -> "Pairs":
        """Every pair when there are at most ``limit``; otherwise ``limit`` pairs drawn uniformly (seeded)."""
        n = len(values)
        total = n * (n - 1) // 2
        if total <= limit:
            return cls.of(values, hparams)
        rng = np.random.default_rng([seed, n])
        a = rng.integers(0, n, limit)
        b = rng.integers(0, n - 1, limit)
        b = b + (b >= a)
        return cls.of(values, hparams, np.minimum(a, b), np.maximum(a, b), total / limit)

    def subset(self, keep: np.ndarray) -> "Pairs":
        """The pairs selected by a boolean mask or indices (codes shared)."""
        return Pairs(self.n, self.first[keep], self.second[keep], self.value_sign[keep], self.codes, self.scale)

    def target_sign(self, targets: np.ndarray) -> np.ndarray:
        """resamples x models targets (or models,) -> resamples x pairs signs of target_a - target_b (int8)."""
        targets = np.atleast_2d(np.asarray(targets, dtype=float))
        if targets.shape[1] != self.n:
            raise ValueError(f"a target has {targets.shape[1]} values for {self.n} models")
        # np.take keeps the rows C-ordered (fancy indexing of columns gives a Fortran-ordered result)
        return np.sign(np.take(targets, self.first, axis=1) - np.take(targets, self.second, axis=1)).astype(np.int8)

    def weights(self, counts: np.ndarray) -> np.ndarray:
        """resamples x models multiplicities -> resamples x pairs weights (copies of one model form no pair)."""
        return self.scale * np.take(counts, self.first, axis=1) * np.take(counts, self.second, axis=1)

    def grouped_tau(self, pair_weights: np.ndarray, target_sign: np.ndarray, labels: np.ndarray,
                    groups: int) -> np.ndarray:
        """Kendall tau-b within each group of pairs (label -1: no group): resamples x groups, NaN if undefined."""
        cached = self._cells.get("groups")           # (labels, groups, indicator): built once per labelling
        if cached is None or cached[0] is not labels or cached[1] != groups:
            cached = self._cells["groups"] = (labels, groups, one_hot(labels, groups))
        indicator = cached[2]
        concordance = sum_by(pair_weights * (self.value_sign * target_sign), indicator)
        ordered_values = sum_by(pair_weights * np.abs(self.value_sign), indicator)
        ordered_target = sum_by(pair_weights * np.abs(target_sign), indicator)
        return ratio(concordance, np.sqrt(ordered_values * ordered_target))

    def cells(self, condition: tuple[str, ...]) -> tuple[np.ndarray, int]:
        """Each model's code for the joint values of the hyperparameters in ``condition``, and how many codes."""
        if condition not in self._cells:
            u = joint_codes([self.codes[name] for name in condition], self.n)
            self._cells[condition] = (u, int(u.max()) + 1 if self.n else 1)
        return self._cells[condition]

    def cell_pairs(self, condition: tuple[str, ...]) -> "CellPairs":
        """The (cell of a, cell of b) combinations that can carry information, indexed compactly: those holding two
        or more ordered pairs (a model with itself included). A combination with a single ordered pair has one
        sign in every resample, so neither information nor entropy, and adds nothing to either CMI's sums (PGDL's
        unweighted means share their count of cells, which cancels); a grid with many values has mostly such
        combinations. Pairs in a dropped combination get index -1."""
        key = ("pairs", condition)
        if key not in self._cells:
            u, cells = self.cells(condition)
            forward = u[self.first] * cells + u[self.second]
            mirror = u[self.second] * cells + u[self.first]
            diagonal = u * cells + u
            occupied, entries = np.unique(np.concatenate([forward, mirror, diagonal]), return_counts=True)
            codes = occupied[entries >= 2]

            def index(found: np.ndarray) -> np.ndarray:
                at = np.minimum(np.searchsorted(codes, found), max(len(codes) - 1, 0))
                return np.where((len(codes) > 0) & (codes[at] == found if len(codes) else False), at, -1)

            found, mirror = index(forward), index((codes % cells) * cells + codes // cells)
            # the listed pairs grouped by class (measure sign, combination), for the kernel's counts
            listed = np.flatnonzero(found >= 0)
            classes = (self.value_sign[listed].astype(np.int64) + 1) * len(codes) + found[listed]
            order = np.argsort(classes, kind="stable")
            kinds, starts = np.unique(classes[order], return_index=True)
            self._cells[key] = CellPairs(codes, found, mirror, index(diagonal), cells, len(codes) == len(occupied),
                                         listed[order], np.r_[starts, len(order)].astype(np.int64),
                                         kinds // max(len(codes), 1), kinds % max(len(codes), 1))
        return self._cells[key]

    def sign_table(self, pair_weights: np.ndarray | float, target_sign: np.ndarray,
                   condition: tuple[str, ...]) -> np.ndarray:
        """Over ordered pairs (a, b) of distinct models: resamples x measure sign (-1, 0, +1) x target sign (-1, 0,
        +1) x (cell of a, cell of b) (the occupied combinations, `cell_pairs`), the summed pair weights; a cell is
        the joint value of the hyperparameters in ``condition``. Each unordered pair stands for (a, b) with signs
        (s, t) and (b, a) with (-s, -t).

        ``pair_weights`` is resamples x pairs, or one number for every pair of every resample (counted, then
        multiplied by it); ``target_sign`` is resamples x pairs (int8), or one row for every resample."""
        combos = self.cell_pairs(condition)
        weights = np.ones((1, len(self.first))) if np.ndim(pair_weights) == 0 else pair_weights
        table = _pair_kernels.sign_counts(combos.grouped, combos.bounds, combos.class_measure, combos.class_cell,
                                          combos.mirror, np.ascontiguousarray(target_sign, dtype=np.int8),
                                          np.ascontiguousarray(weights, dtype=float), len(combos.codes))
        if np.ndim(pair_weights) == 0:
            table *= float(pair_weights)
        return table

    def marginal(self, table: np.ndarray, condition: tuple[str, ...], coarser: tuple[str, ...]) -> np.ndarray:
        """The sign table of ``coarser`` (a subset of ``condition``'s hyperparameters) from ``condition``'s: the
        counts of the finer cell pairs that make each coarser one, summed."""
        key = ("marginal", condition, coarser)
        if key not in self._cells:
            fine, fine_cells = self.cells(condition)
            coarse, coarse_cells = self.cells(coarser)
            mapping = np.zeros(fine_cells, dtype=np.int64)
            mapping[fine] = coarse
            fine_codes = self.cell_pairs(condition).codes
            target = np.searchsorted(self.cell_pairs(coarser).codes, mapping[fine_codes // fine_cells] * coarse_cells
                                     + mapping[fine_codes % fine_cells])
            self._cells[key] = one_hot(target, len(self.cell_pairs(coarser).codes))
        indicator = self._cells[key]
        return sum_by(table.reshape(-1, indicator.shape[0]), indicator).reshape(*table.shape[:-1], indicator.shape[1])

    def itself(self, counts: np.ndarray, condition: tuple[str, ...]) -> np.ndarray:
        """resamples x cell pairs: the ordered pairs of each model with itself (each copy with each copy, counts
        squared), summed into its (cell, cell) combination."""
        key = ("itself", condition)
        if key not in self._cells:
            combos = self.cell_pairs(condition)
            self._cells[key] = one_hot(combos.diagonal, len(combos.codes))
        return sum_by(counts ** 2, self._cells[key])


@dataclass(frozen=True)
class CellPairs:
    """The occupied (cell of a, cell of b) combinations of a condition: their codes (cell a x cells + cell b), the
    index of each listed pair's combination, of each combination's mirror (b, a), and of each model with itself;
    and the listed pairs grouped by class, as the kernel counts them."""

    codes: np.ndarray
    forward: np.ndarray
    mirror: np.ndarray
    diagonal: np.ndarray
    cells: int
    complete: bool     # no occupied combination was dropped (a coarser table can be summed from this one)
    grouped: np.ndarray          # the pairs of the kept combinations, by class (measure sign, combination)
    bounds: np.ndarray           # where each class starts in `grouped` (and the end)
    class_measure: np.ndarray    # each class's measure sign + 1
    class_cell: np.ndarray       # and its combination
