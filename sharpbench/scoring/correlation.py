"""Kendall tau-b and Spearman of one vector against many rows (resamples), in time near m log m per row.

``x`` is one value per model (or one row per resample), ``rows`` one target per resample; ``draws`` (optional)
are the models each resample draws (a resample of models), which weights every pair by the product of the two
models' multiplicities, copies of one model forming no pair. Few models: over the pairs, as a product of sign
matrices (vectorized over resamples); many models: scipy.stats per row on the drawn models (Knight's O(m log m)
algorithm; tau-b over a sample with copies leaves the pairs of copies out, as they are tied on both sides).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import stats

PAIRS_LIMIT = 200_000          # at most this many pairs of models: the pair form; above, scipy row by row
_CHUNK_ELEMENTS = 4_000_000    # resamples x pairs per sign product


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(np.shape(numerator), np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _fixed_rows(rows: np.ndarray, draws: np.ndarray | None) -> np.ndarray:
    """One row repeated for every resample of models."""
    return np.broadcast_to(rows, (len(draws), rows.shape[1])) if draws is not None and len(rows) == 1 else rows


def _as_rows(x: np.ndarray, resamples: int) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return np.broadcast_to(x, (resamples, x.shape[-1])) if x.ndim == 1 else x


def kendall(x: np.ndarray, rows: np.ndarray, draws: np.ndarray | None = None) -> np.ndarray:
    """Kendall tau-b of ``x`` against each row: (resamples,); NaN where either side is constant. One row with
    ``draws`` is the target held fixed for every resample of models."""
    rows = _fixed_rows(np.atleast_2d(np.asarray(rows, dtype=float)), draws)
    m = rows.shape[1]
    if m * (m - 1) // 2 <= PAIRS_LIMIT:
        return _kendall_pairs(x, rows, draws)
    xs = _as_rows(x, len(rows))
    out = np.empty(len(rows))
    for r in range(len(rows)):
        pick = slice(None) if draws is None else draws[r]
        a, b = xs[r][pick], rows[r][pick]
        out[r] = stats.kendalltau(a, b).statistic if len(a) > 1 else math.nan
    return out


@functools.lru_cache(maxsize=8)
def _pairs(m: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(m, k=1)


def _kendall_pairs(x: np.ndarray, rows: np.ndarray, draws: np.ndarray | None) -> np.ndarray:
    m = rows.shape[1]
    first, second = _pairs(m)
    x = np.asarray(x, dtype=float)
    fixed = np.sign(x[first] - x[second]) if x.ndim == 1 else None
    out = np.empty(len(rows))
    step = max(1, _CHUNK_ELEMENTS // max(1, len(first)))
    for start in range(0, len(rows), step):
        block = rows[start:start + step]
        sign_y = np.sign(block[:, first] - block[:, second])
        sign_x = fixed if fixed is not None else np.sign(x[start:start + step, first] - x[start:start + step, second])
        if draws is None:
            if fixed is not None:      # one x: a matrix-vector product
                concordance = sign_y @ fixed
                ordered_x = np.full(len(block), float(np.count_nonzero(fixed)))
            else:
                concordance = np.einsum("ij,ij->i", sign_x, sign_y)
                ordered_x = np.count_nonzero(sign_x, axis=1).astype(float)
            ordered_y = np.count_nonzero(sign_y, axis=1).astype(float)
        else:
            counts = multiplicities(draws[start:start + step], m)
            weight = counts[:, first] * counts[:, second]
            concordance = (weight * sign_x * sign_y).sum(axis=1)
            ordered_x = (weight * np.abs(sign_x)).sum(axis=1)
            ordered_y = (weight * np.abs(sign_y)).sum(axis=1)
        out[start:start + step] = _ratio(concordance, np.sqrt(ordered_x * ordered_y))
    return out


def spearman(x: np.ndarray, rows: np.ndarray, draws: np.ndarray | None = None) -> np.ndarray:
    """Spearman's rho (average ranks) of ``x`` against each row, over the drawn models: (resamples,)."""
    rows = _fixed_rows(np.atleast_2d(np.asarray(rows, dtype=float)), draws)
    x = np.asarray(x, dtype=float)
    if draws is not None:
        rows = np.take_along_axis(rows, draws, axis=1)
        x = np.take_along_axis(_as_rows(x, len(rows)), draws, axis=1)
    ranks_x = _centred_ranks(x)      # once for a fixed x
    out = np.empty(len(rows))
    step = max(1, _CHUNK_ELEMENTS // max(1, rows.shape[1]))
    for start in range(0, len(rows), step):
        ranks_y = _centred_ranks(rows[start:start + step])
        part_x = ranks_x if ranks_x.ndim == 1 else ranks_x[start:start + step]
        out[start:start + step] = _ratio((part_x * ranks_y).sum(axis=-1),
                                         np.sqrt((part_x ** 2).sum(axis=-1) * (ranks_y ** 2).sum(axis=-1)))
    return out


def _centred_ranks(values: np.ndarray) -> np.ndarray:
    ranks = stats.rankdata(values, axis=-1)
    return ranks - ranks.mean(axis=-1, keepdims=True)


def multiplicities(draws: np.ndarray, n: int) -> np.ndarray:
    """resamples x draws of models -> resamples x n counts of each model."""
    offsets = np.arange(len(draws))[:, None] * n
    return np.bincount((draws + offsets).ravel(), minlength=len(draws) * n).reshape(len(draws), n).astype(float)
