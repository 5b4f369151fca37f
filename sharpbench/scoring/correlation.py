"""Kendall tau-b and Spearman of one vector against many rows (resamples), in time near m log m per row.

``x`` is one value per model (or one row per resample), ``rows`` one target per resample; ``draws`` (optional)
are the models each resample draws (a resample of models), which weights every model by its multiplicity: the
statistic of the drawn sample, where copies of one model are tied on both sides (tau-b leaves their pairs out).
numpy sorts the rows; the compiled kernels of :mod:`sharpbench.scoring._rank_kernels` do the rest (scipy.stats
per row was the bulk of scoring a large population: docs/benchmarks.md#scoring-at-scale).
"""

from __future__ import annotations

import numpy as np

from sharpbench.scoring import _rank_kernels

_CHUNK_ELEMENTS = 4_000_000    # rows x models sorted at once


def _rows(values: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(values, dtype=np.float64))


def _weights(draws: np.ndarray | None, m: int) -> np.ndarray:
    """Each model's multiplicity in each resample (one row of ones without draws), made a chunk at a time."""
    return np.ones((1, m)) if draws is None else multiplicities(draws, m)


def _chunks(x: np.ndarray, rows: np.ndarray, draws: np.ndarray | None):
    """(x, rows, weights) over slices of the resamples; an array of one row is shared by every resample."""
    total = max(len(x), len(rows), 1 if draws is None else len(draws))
    step = max(1, _CHUNK_ELEMENTS // max(1, rows.shape[1]))
    for start in range(0, total, step):
        part = slice(start, start + step)
        yield (x if len(x) == 1 else x[part], rows if len(rows) == 1 else rows[part],
               _weights(None if draws is None else draws[part], rows.shape[1]))


def _check(x: np.ndarray, rows: np.ndarray, draws: np.ndarray | None) -> None:
    if x.shape[1] != rows.shape[1]:
        raise ValueError(f"x has {x.shape[1]} values per row and the rows {rows.shape[1]}")
    lengths = {len(a) for a in (x, rows) if len(a) > 1} | ({len(draws)} if draws is not None else set())
    if len(lengths) > 1:
        raise ValueError(f"x, rows and draws give different numbers of resamples: {sorted(lengths)}")


def _with_nan(x: np.ndarray, rows: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """The resamples whose drawn models include a NaN on either side (their statistic is NaN, as scipy's), or
    None where there is no NaN at all."""
    missing_x, missing_rows = np.isnan(x), np.isnan(rows)
    if not (missing_x.any() or missing_rows.any()):
        return None
    return ((missing_x | missing_rows) & (weights > 0)).any(axis=1)


def _masked(values: np.ndarray, undefined: np.ndarray | None) -> np.ndarray:
    if undefined is not None:
        values[np.broadcast_to(undefined, values.shape)] = np.nan
    return values


def kendall(x: np.ndarray, rows: np.ndarray, draws: np.ndarray | None = None) -> np.ndarray:
    """Kendall tau-b of ``x`` against each row: (resamples,); NaN where either side is constant. One row with
    ``draws`` is the target held fixed for every resample of models."""
    x, rows = _rows(x), _rows(rows)
    _check(x, rows, draws)
    x_ranks = (_rank_kernels.dense_ranks(x, np.argsort(x, axis=1)) if len(x) == 1 else None)
    out = []
    for part_x, part_rows, part_weights in _chunks(x, rows, draws):
        ranks = x_ranks if x_ranks is not None else _rank_kernels.dense_ranks(part_x, np.argsort(part_x, axis=1))
        order = np.argsort(part_rows, axis=1)
        out.append(_masked(_rank_kernels.kendall_rows(ranks, _rank_kernels.dense_ranks(part_rows, order), order,
                                                      part_weights), _with_nan(part_x, part_rows, part_weights)))
    return np.concatenate(out)


def spearman(x: np.ndarray, rows: np.ndarray, draws: np.ndarray | None = None) -> np.ndarray:
    """Spearman's rho (average ranks) of ``x`` against each row, over the drawn models: (resamples,)."""
    x, rows = _rows(x), _rows(rows)
    _check(x, rows, draws)
    x_order = np.argsort(x, axis=1) if len(x) == 1 else None
    out = []
    for part_x, part_rows, part_weights in _chunks(x, rows, draws):
        order = x_order if x_order is not None else np.argsort(part_x, axis=1)
        out.append(_masked(_rank_kernels.spearman_rows(part_x, order, part_rows, np.argsort(part_rows, axis=1),
                                                       part_weights), _with_nan(part_x, part_rows, part_weights)))
    return np.concatenate(out)


def multiplicities(draws: np.ndarray, n: int) -> np.ndarray:
    """resamples x draws of models -> resamples x n counts of each model."""
    offsets = np.arange(len(draws))[:, None] * n
    return np.bincount((draws + offsets).ravel(), minlength=len(draws) * n).reshape(len(draws), n).astype(float)
