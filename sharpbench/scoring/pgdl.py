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

from sharpbench.scoring.pairs import Hparams, Pairs, one_hot, ratio, sum_by


@dataclass(frozen=True)
class ConditionalMI:
    """A conditional-mutual-information score and the hyperparameters it is conditioned on at the minimum."""

    value: float
    condition: tuple[str, ...]


def condition_sets(names: list[str]) -> list[tuple[str, ...]]:
    """The pairs of distinct hyperparameters; a single hyperparameter (or none) when there are fewer than two."""
    return list(itertools.combinations(names, 2)) if len(names) >= 2 else [tuple(names)]


def _clogc(counts: np.ndarray) -> np.ndarray:
    """The sum of c log c over the leading (sign) axes: resamples x cells."""
    terms = special.xlogy(counts, counts)
    return terms.reshape(-1, *terms.shape[-2:]).sum(axis=0)


def score(pairs: Pairs, sign_table: np.ndarray, counts: np.ndarray, condition: tuple[str, ...],
          orientation: int) -> np.ndarray:
    """PGDL's normalized CMI for one condition, per resample, from `Pairs.sign_table` (ordered pairs of distinct
    models: measure sign x target sign x resamples x cells) and the models' multiplicities (resamples x models)."""
    measure_plus = 2 if orientation > 0 else 0  # the index of sign(mu_a - mu_b) that makes the oriented measure +
    plus = sign_table[measure_plus]  # target sign x resamples x cells
    rest = sign_table.sum(axis=0) - plus
    table = np.stack([np.stack([plus[2], rest[2]]),  # gap + (target sign +1): measure +, measure -
                      np.stack([plus[0] + plus[1], rest[0] + rest[1]])])  # gap -
    # a model paired with itself (each copy with each copy in a resample): gap "-", measure "-"
    u, cells = pairs.cells(condition)
    table[1, 1] += sum_by(counts ** 2, one_hot(u * cells + u, cells * cells))
    # per cell, in bits: I = (sum c log c - sum g log g - sum m log m + N log N) / (N ln 2) over the cell's
    # table c, its gap margin g and measure margin m; H(gap) = (N log N - sum g log g) / (N ln 2)
    size = table.sum(axis=(0, 1))
    occupied = size > 0
    cell, gap_part = special.xlogy(size, size), _clogc(table.sum(axis=1))
    information = ratio(_clogc(table) - gap_part - _clogc(table.sum(axis=0)) + cell, size * math.log(2))
    gap_entropy = ratio(cell - gap_part, size * math.log(2))
    # rounding leaves about 1e-16 where a cell's value is exactly 0 (an empty cell gives NaN): both read as 0
    information, gap_entropy = (np.where(np.nan_to_num(x) > 1e-12, x, 0.0) for x in (information, gap_entropy))
    cells_held = occupied.sum(axis=1)
    mean_information = ratio((information * occupied).sum(axis=1), cells_held)
    mean_entropy = ratio((gap_entropy * occupied).sum(axis=1), cells_held)
    # The program's 1e-12 inside the logarithm makes a gap without entropy in every cell score 0, not 0/0.
    return np.where(mean_entropy == 0, 0.0, ratio(mean_information, mean_entropy))


def conditional_mi_pgdl(values: Sequence[float], target: Sequence[float], hparams: Hparams,
                        orientation: int = 1) -> ConditionalMI:
    """PGDL's score of the measure (oriented: +1 when higher means worse) against a target, and its minimizer."""
    pairs = Pairs.of(values, hparams)
    counts = np.ones((1, pairs.n))
    by_sign = pairs.by_target_sign(pairs.weights(counts), pairs.target_sign(target))
    return smallest({condition: score(pairs, pairs.sign_table(by_sign, condition), counts, condition, orientation)
                     for condition in condition_sets(list(pairs.codes))})


def smallest(found: dict[tuple[str, ...], np.ndarray]) -> ConditionalMI:
    """The smallest defined score of a single evaluation ({condition: (1,)}) and its condition."""
    defined = {condition: float(value[0]) for condition, value in found.items() if math.isfinite(value[0])}
    if not defined:
        return ConditionalMI(math.nan, ())
    condition = min(defined, key=defined.__getitem__)
    return ConditionalMI(defined[condition], condition)
