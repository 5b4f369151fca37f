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
The program's `check_data_validity` refuses a grid that is incomplete (a combination of the hyperparameters'
values without a model) or not unique (two models with the same hyperparameters); ``grid_refusal`` says why
and which cells are missing, and the metric ``conditional_mi_pgdl`` is then undefined. Its computation with the
mean over the cells that hold pairs, the same on a complete grid, is the metric ``conditional_mi_pgdl_filled``.
The seed is never conditioned on (it marks replicates), but the grid must hold every seed of every
configuration. A collection with a single conditioned hyperparameter (the program needs two) conditions on it
alone. Among many models the pairs are a seeded sample (`Pairs.every_or_sample`), each standing for its share.
PGDL's entropy adds 1e-12 inside its logarithm: the values differ by less than 1e-11, except that a gap whose
sign has no entropy in any cell scores 0 there (0 / -1e-12), not NaN; so it does here.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from sharpbench.scoring import _pair_kernels
from sharpbench.scoring.pairs import REPLICATE, Hparams, Pairs, ratio, varied_hparams

_EXAMPLES = 3   # missing cells named in a refusal


@dataclass(frozen=True)
class ConditionalMI:
    """A conditional-mutual-information score and the hyperparameters it is conditioned on at the minimum."""

    value: float
    condition: tuple[str, ...]


def grid_refusal(hparams: Hparams) -> str | None:
    """Why PGDL's scoring program would refuse this grid (None when it is complete and unique): over the conditioned
    hyperparameters and the seed, two models with the same values, or combinations of values without a model."""
    names = varied_hparams(hparams)
    if REPLICATE in hparams and len(set(hparams[REPLICATE])) > 1:
        names = names + [REPLICATE]
    if not names:
        return None
    rows = list(zip(*(hparams[name] for name in names)))
    present = set(rows)
    if len(present) < len(rows):
        return (f"non-unique grid: {len(rows) - len(present)} models repeat another's values of "
                f"({', '.join(names)})")
    levels = [sorted(set(hparams[name])) for name in names]
    cells = math.prod(len(values) for values in levels)
    if len(present) == cells:
        return None
    missing = []
    for combination in itertools.islice(itertools.product(*levels), 100_000):
        if combination not in present:
            missing.append(", ".join(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                                     for name, value in zip(names, combination)))
            if len(missing) == _EXAMPLES:
                break
    return (f"incomplete grid: {cells - len(present)} of the {cells} combinations of ({', '.join(names)}) hold no "
            f"model, e.g. " + "; ".join(f"({cell})" for cell in missing))


def condition_sets(names: list[str]) -> list[tuple[str, ...]]:
    """The pairs of distinct hyperparameters; a single hyperparameter (or none) when there are fewer than two."""
    return list(itertools.combinations(names, 2)) if len(names) >= 2 else [tuple(names)]


def score(pairs: Pairs, sign_table: np.ndarray, counts: np.ndarray, condition: tuple[str, ...],
          orientation: int) -> np.ndarray:
    """PGDL's normalized CMI for one condition, per resample, from `Pairs.sign_table` (ordered pairs of distinct
    models: resamples x measure sign x target sign x cells) and the models' multiplicities (resamples x models)."""
    measure_plus = 2 if orientation > 0 else 0  # the index of sign(mu_a - mu_b) that makes the oriented measure +
    # a model paired with itself (each copy with each copy in a resample) counts as gap "-", measure "-"
    itself = np.ascontiguousarray(pairs.itself(counts, condition), dtype=float)
    # per cell, in bits: I = (sum c log c - sum g log g - sum m log m + N log N) / (N ln 2) over the cell's 2 x 2
    # table c (gap +/-, oriented measure +/-), its gap margin g and measure margin m; H(gap) = (N log N - sum g log g)
    # / (N ln 2). The program's unweighted means over cells share their count of cells, which cancels in their
    # ratio; the combinations `Pairs.cell_pairs` leaves out add 0 to both sums.
    total_information, total_entropy = _pair_kernels.pgdl_sums(np.ascontiguousarray(sign_table, dtype=float),
                                                               itself, measure_plus).T
    # The program's 1e-12 inside the logarithm makes a gap without entropy in every cell score 0, not 0/0.
    return np.where(total_entropy == 0, 0.0, ratio(total_information, total_entropy))


def conditional_mi_pgdl(values: Sequence[float], target: Sequence[float], hparams: Hparams,
                        orientation: int = 1) -> ConditionalMI:
    """PGDL's score of the measure (oriented: +1 when higher means worse) against a target, and its minimizer, over
    the cells that hold pairs (what the program computes on a complete grid; `grid_refusal` says when it would
    refuse)."""
    pairs = Pairs.of(values, hparams)
    counts = np.ones((1, pairs.n))
    weights, signs = pairs.weights(counts), pairs.target_sign(target)
    return smallest({condition: score(pairs, pairs.sign_table(weights, signs, condition), counts, condition, orientation)
                     for condition in condition_sets(list(pairs.codes))})


def smallest(found: dict[tuple[str, ...], np.ndarray]) -> ConditionalMI:
    """The smallest defined score of a single evaluation ({condition: (1,)}) and its condition."""
    defined = {condition: float(value[0]) for condition, value in found.items() if math.isfinite(value[0])}
    if not defined:
        return ConditionalMI(math.nan, ())
    condition = min(defined, key=defined.__getitem__)
    return ConditionalMI(defined[condition], condition)
