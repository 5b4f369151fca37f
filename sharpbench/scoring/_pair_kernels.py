"""Compiled kernels (numba) of the pairwise metrics' tables: `Pairs.sign_table`'s summed pair weights, and the
sums of c log c that the conditional mutual information reads from them.

Written by hand because both are loops that numpy can only run through temporaries as large as the table (a
scatter-add over resamples x pairs, then c log c of every entry and of every margin): at 60 models the numpy forms
took most of a target's scoring (docs/benchmarks.md#scoring-at-scale). The tests check the results against plain
loops over pairs (tests/test_metrics.py)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def sign_counts(grouped: np.ndarray, bounds: np.ndarray, class_measure: np.ndarray, class_cell: np.ndarray,
                mirror: np.ndarray, target_sign: np.ndarray, weights: np.ndarray, width: int) -> np.ndarray:
    """resamples x measure sign (-1, 0, +1) x target sign x cell pairs: the summed weights of the ordered pairs.

    The listed pairs come ``grouped`` by class (their measure sign + 1 ``class_measure`` and (cell of a, cell of b)
    combination ``class_cell``), class c at grouped[bounds[c]:bounds[c + 1]]; ``mirror`` is each combination's
    (b, a); ``target_sign``: 1 or R rows of each pair's target sign (int8); ``weights``: 1 or R rows of its weight.
    A class's weights are summed by target sign, then counted as (a, b) and, both signs negated, as (b, a)."""
    rows = max(target_sign.shape[0], weights.shape[0])
    out = np.zeros((rows, 3, 3, width))
    for r in prange(rows):                    # resamples in parallel (numba's threads), each its own slice
        row = np.int64(r)            # prange's index is unsigned; an int64 keeps indexing integral
        signs = target_sign[(row if target_sign.shape[0] > 1 else 0)]
        w = weights[(row if weights.shape[0] > 1 else 0)]
        by_sign = np.zeros(3)
        for c in range(len(bounds) - 1):
            by_sign[:] = 0.0
            for q in range(bounds[c], bounds[c + 1]):
                p = grouped[q]
                by_sign[signs[p] + 1] += w[p]
            mu, cell = class_measure[c], class_cell[c]
            for t in range(3):
                out[r, mu, t, cell] += by_sign[t]
                out[r, 2 - mu, 2 - t, mirror[cell]] += by_sign[t]
    return out


@njit(cache=True)
def _clogc(count: float) -> float:
    return count * math.log(count) if count > 0.0 and count != 1.0 else 0.0


@njit(cache=True, parallel=True)
def information_sums(table: np.ndarray) -> np.ndarray:
    """resamples x 5 from a sign table (resamples x measure sign x target sign x cells): the sums over the cells of
    c log c of the entries, of the measure margins (summed over the target sign), of the target margins and of the
    cells' totals, and the total."""
    rows, cells = table.shape[0], table.shape[3]
    out = np.zeros((rows, 5))
    for r in prange(rows):
        target = np.zeros(3)
        for k in range(cells):
            total = 0.0
            target[:] = 0.0
            for mu in range(3):
                margin = 0.0
                for t in range(3):
                    count = table[r, mu, t, k]
                    out[r, 0] += _clogc(count)
                    margin += count
                    target[t] += count
                out[r, 1] += _clogc(margin)
                total += margin
            for t in range(3):
                out[r, 2] += _clogc(target[t])
            out[r, 3] += _clogc(total)
            out[r, 4] += total
    return out


@njit(cache=True, parallel=True)
def pgdl_sums(table: np.ndarray, itself: np.ndarray, measure_plus: int) -> np.ndarray:
    """resamples x 2 from a sign table (resamples x measure sign x target sign x cells), as PGDL's program counts:
    per cell the 2 x 2 table of gap sign (+ against 0 or -) by oriented measure sign (+ at index ``measure_plus``
    against the rest), plus ``itself`` (resamples x cells: the pairs of a model with itself) in (gap -, measure -);
    the sums over the cells of each cell's I(measure; gap) and H(gap) in bits, each read as 0 below 1e-12 (as
    rounding leaves about 1e-16 where a value is exactly 0); empty cells add nothing."""
    rows, cells = table.shape[0], table.shape[3]
    out = np.zeros((rows, 2))
    for r in prange(rows):
        for k in range(cells):
            a = table[r, measure_plus, 2, k]                                       # gap +, measure +
            b = table[r, 0, 2, k] + table[r, 1, 2, k] + table[r, 2, 2, k] - a      # gap +, measure -
            c = table[r, measure_plus, 0, k] + table[r, measure_plus, 1, k]        # gap -, measure +
            d = 0.0
            for mu in range(3):
                d += table[r, mu, 0, k] + table[r, mu, 1, k]
            d += itself[r, k] - c                                                  # gap -, measure -
            size = a + b + c + d
            if size <= 0.0:
                continue
            norm = size * math.log(2.0)
            whole = _clogc(size)
            gaps = _clogc(a + b) + _clogc(c + d)
            information = (_clogc(a) + _clogc(b) + _clogc(c) + _clogc(d) - gaps - _clogc(a + c) - _clogc(b + d)
                           + whole) / norm
            entropy = (whole - gaps) / norm
            out[r, 0] += information if information > 1e-12 else 0.0
            out[r, 1] += entropy if entropy > 1e-12 else 0.0
    return out
