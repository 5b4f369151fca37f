"""Conditional mutual information exactly as the PGDL 2020 competition's scoring program computes it.

Source: the PGDL starting kit, ``pgdl/scoring_program/mutual_information.py`` (Jiang et al., "NeurIPS 2020
Competition: Predicting Generalization in Deep Learning", 2020). Its computation, reproduced here:
- for each ordered pair (h1, h2) of distinct hyperparameters, the cells are the values of h1 and h2 in both
  models of a pair (a, b); every ordered pair of models counts, a model paired with itself included;
- in each cell a 2 x 2 table of the gap's sign (``+`` when gap_a > gap_b, otherwise ``-``) and the measure's
  sign (``+`` when mu_a > mu_b, otherwise ``-``): a tie, and a model paired with itself, count as ``-``;
- the mutual information of each cell's table in bits, averaged over the cells without weights, divided by
  the average over cells of the entropy of the gap's sign in the cell;
- the score is the minimum over (h1, h2) (both orders give the same table, so each unordered pair is
  evaluated once). PGDL publishes this fraction x 100; here it is kept as the fraction.
The measure is read as a complexity (larger means a larger gap), so callers pass it oriented.
Where this departs from the program, only where the program has no answer: the program averages over every
combination of the hyperparameters' possible values and returns NaN when one of those cells has no model
pair (an incomplete grid); here the average is over the cells that hold pairs, which is the same on a complete
grid. A collection with a single conditioned hyperparameter (the program needs two) conditions on it alone.
PGDL's entropy adds 1e-12 inside its logarithm: the values differ by less than 1e-11, except that a gap whose
sign has no entropy in any cell scores 0 there (0 / -1e-12), not NaN; so it does here.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import special

from sharpbench.pairs import Hparams, Pairs, joint_codes, one_hot, ratio, sum_by


@dataclass(frozen=True)
class ConditionalMI:
    """A conditional-mutual-information score and the hyperparameters it is conditioned on at the minimum."""

    value: float
    condition: tuple[str, ...]


def condition_sets(names: list[str]) -> list[tuple[str, ...]]:
    """The pairs of distinct hyperparameters; a single hyperparameter (or none) when there are fewer than two."""
    return list(itertools.combinations(names, 2)) if len(names) >= 2 else [tuple(names)]


def _bits(table: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    """-sum p log2 p of the counts in ``table`` normalized over ``axis``."""
    total = table.sum(axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(total > 0, table / total, 0.0)
    return -special.xlogy(p, p).sum(axis=axis) / math.log(2)


def _score(pairs: Pairs, counts: np.ndarray, target_sign: np.ndarray, condition: tuple[str, ...]) -> np.ndarray:
    """PGDL's normalized CMI for one condition, per resample (counts: resamples x models multiplicities)."""
    u = joint_codes([pairs.codes[name] for name in condition], pairs.n)
    cells = int(u.max()) + 1 if pairs.n else 1
    weights = pairs.weights(counts)
    forward = one_hot((u[pairs.first] * cells + u[pairs.second]) * 2 + (pairs.value_sign <= 0), cells * cells * 2)
    backward = one_hot((u[pairs.second] * cells + u[pairs.first]) * 2 + (pairs.value_sign >= 0), cells * cells * 2)
    table = np.zeros((len(counts), cells * cells, 2, 2))  # resamples, cell, gap (+, -), measure (+, -)
    for gap, forward_mask, backward_mask in ((0, target_sign > 0, target_sign < 0),
                                             (1, target_sign <= 0, target_sign >= 0)):
        table[:, :, gap, :] += (sum_by(weights * forward_mask, forward)
                                + sum_by(weights * backward_mask, backward)).reshape(len(counts), cells * cells, 2)
    # a model paired with itself (each copy with each copy in a resample): gap "-", measure "-"
    table[:, :, 1, 1] += sum_by(counts ** 2, one_hot(u * cells + u, cells * cells))
    occupied = table.sum(axis=(2, 3)) > 0
    information = _bits(table.sum(axis=3), (2,)) + _bits(table.sum(axis=2), (2,)) - _bits(table, (2, 3))
    gap_entropy = _bits(table.sum(axis=3), (2,))
    cells_held = occupied.sum(axis=1)
    mean_information = ratio((information * occupied).sum(axis=1), cells_held)
    mean_entropy = ratio((gap_entropy * occupied).sum(axis=1), cells_held)
    # The program's 1e-12 inside the logarithm makes a gap without entropy in every cell score 0, not 0/0.
    return np.where(mean_entropy == 0, 0.0, ratio(mean_information, mean_entropy))


def scores(oriented: Pairs, counts: np.ndarray, target_sign: np.ndarray) -> dict[tuple[str, ...], np.ndarray]:
    """PGDL's score for every condition, per resample: {condition: (resamples,)}."""
    return {condition: _score(oriented, counts, target_sign, condition)
            for condition in condition_sets(list(oriented.codes))}


def conditional_mi_pgdl(values: Sequence[float], target: Sequence[float], hparams: Hparams,
                        orientation: int = 1) -> ConditionalMI:
    """PGDL's score of the measure (oriented: +1 when higher means worse) against a target, and its minimizer."""
    pairs = Pairs.of(orientation * np.asarray(values, dtype=float), hparams)
    return smallest(scores(pairs, np.ones((1, pairs.n)), pairs.target_sign(target)))


def smallest(found: dict[tuple[str, ...], np.ndarray]) -> ConditionalMI:
    """The smallest defined score of a single evaluation ({condition: (1,)}) and its condition."""
    defined = {condition: float(score[0]) for condition, score in found.items() if math.isfinite(score[0])}
    if not defined:
        return ConditionalMI(math.nan, ())
    condition = min(defined, key=defined.__getitem__)
    return ConditionalMI(defined[condition], condition)
