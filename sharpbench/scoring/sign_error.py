"""Robust sign error as Dziugaite et al. (2020, "In search of robust measures of generalization", NeurIPS)
define and compute it (released code: nitarshan/robust-generalization-measures,
experiments/coupled_networks/create_environments.py, common.py and figure_cdf_all_measures.py).

- A configuration is the hyperparameters without the seed; an environment is a pair of configurations that
  differ in exactly one hyperparameter, both present in the collection.
- Every pair of models (a, b), one from each configuration, gets the weight w = (psi - 1/2)_+ with
  psi = max(0, 1 - 2 exp(-n dg^2 / 2))^2, dg = g_a - g_b and n the test set's size: from Hoeffding's
  inequality, psi bounds the probability that the sign of dg is not an artefact of the test sample, and only
  the part above one half counts.
- The environment's sign error is sum w (1 - sign(d mu) sign(dg)) / 2 / sum w, the measure mu oriented so
  that larger means worse (a tie of the measure costs 1/2).
- Kept only when the effective sample size (sum w)^2 / sum w^2 is at least ``min_ess`` (12, as in the
  paper's figures; `numpy.isclose` counts as equal); with sum w = 0 the code sets sum w^2 = 1, so the size is 0.
  Each pair of models adds at most one unit of effective sample size, so an environment needs at least 12
  model pairs, e.g. 4 seeds in each configuration: in a single-seed collection no environment is kept.
- Reported per family (the environments where one hyperparameter varies) and for all: the mean, the 90th
  percentile (numpy's linear interpolation) and the maximum of the kept environments' errors, and how many
  were kept out of how many. As in their figure script, each environment enters its family's list twice
  (v1 -> v2 and v2 -> v1); the mean and the maximum do not change, the percentile's interpolation can.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from sharpbench.scoring.pairs import Hparams, Pairs, joint_codes

MIN_ESS = 12.0


def hoeffding_weight(gap_difference: np.ndarray, n: int) -> np.ndarray:
    """psi = max(0, 1 - 2 exp(-n dg^2 / 2))^2: how surely two gaps measured on n examples differ in sign."""
    return np.maximum(0.0, 1.0 - 2.0 * np.exp(-n * np.asarray(gap_difference, dtype=float) ** 2 / 2)) ** 2


@dataclass(frozen=True)
class FamilySignError:
    """Summary of one family of environments: mean, 90th percentile and maximum of the kept ones' errors."""

    mean: float | None
    p90: float | None
    max: float | None
    kept: int
    total: int


def robust_sign_error(values: Sequence[float], target: Sequence[float], hparams: Hparams, n_examples: int,
                      orientation: int = 1, min_ess: float = MIN_ESS) -> dict[str, dict[str, Any]]:
    """{family: {mean, p90, max, kept, total}} for each conditioned hyperparameter and ``all``."""
    pairs = Pairs.of(orientation * np.asarray(values, dtype=float), hparams)
    target = np.asarray(target, dtype=float)
    names = list(pairs.codes)
    if not names:
        return {"all": asdict(_summary(np.zeros(0), 0))}
    differs = np.stack([codes[pairs.first] != codes[pairs.second] for codes in pairs.codes.values()])
    coupled = differs.sum(axis=0) == 1
    config = joint_codes(list(pairs.codes.values()), pairs.n)
    low = np.minimum(config[pairs.first], config[pairs.second])[coupled]
    high = np.maximum(config[pairs.first], config[pairs.second])[coupled]
    gap_difference = (target[pairs.first] - target[pairs.second])[coupled]
    weight = np.maximum(hoeffding_weight(gap_difference, n_examples) - 0.5, 0.0)
    loss = (1 - pairs.value_sign[coupled] * np.sign(gap_difference)) / 2
    environments, label = np.unique(np.stack([low, high], axis=1), axis=0, return_inverse=True)
    label = label.reshape(-1)
    weight_sum = np.bincount(label, weight, len(environments))
    squared_sum = np.bincount(label, weight ** 2, len(environments))
    squared_sum[np.isclose(weight_sum, 0)] = 1.0
    ess = weight_sum ** 2 / squared_sum
    kept = np.isclose(ess, min_ess) | (ess > min_ess)
    error = np.bincount(label, weight * loss, len(environments))[kept] / weight_sum[kept]
    family_of = np.argmax(differs[:, coupled], axis=0)
    env_family = np.zeros(len(environments), dtype=np.int64)
    env_family[label] = family_of
    out = {name: _summary(error[env_family[kept] == index], int((env_family == index).sum()))
           for index, name in enumerate(names)}
    out["all"] = _summary(error, len(environments))
    return {family: asdict(summary) for family, summary in out.items()}


def _summary(errors: np.ndarray, total: int) -> FamilySignError:
    """Mean, 90th percentile (over each environment listed twice, as the figure script does) and maximum."""
    if not len(errors):
        return FamilySignError(None, None, None, 0, total)
    listed = np.repeat(errors, 2)
    return FamilySignError(float(listed.mean()), float(np.percentile(listed, 90)), float(listed.max()),
                           len(errors), total)

