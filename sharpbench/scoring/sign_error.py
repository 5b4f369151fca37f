"""Robust sign error as Dziugaite et al. (2020, "In search of robust measures of generalization", NeurIPS)
define and compute it (released code: nitarshan/robust-generalization-measures,
experiments/coupled_networks/create_environments.py, common.py and figure_cdf_all_measures.py).

- A configuration is the hyperparameters without the seed; an environment is a pair of configurations that
  differ in exactly one hyperparameter, both present in the collection.
- Every pair of models (a, b), one from each configuration, gets the weight w = (psi - 1/2)_+ with
  psi = max(0, 1 - 2 exp(-n dg^2 / 2))^2, dg = g_a - g_b and n the size of the evaluation set the target is
  measured on (the test set for test error and the gap, as in the paper; the OOD set for an OOD error): from Hoeffding's
  inequality, psi bounds the probability that the sign of dg is not an artefact of the test sample, and only
  the part above one half counts.
- The environment's sign error is sum w (1 - sign(d mu) sign(dg)) / 2 / sum w, the measure mu oriented so
  that larger means worse (a tie of the measure costs 1/2).
- Kept only when the effective sample size (sum w)^2 / sum w^2 is at least ``min_ess`` (12, as in the
  paper's figures; `numpy.isclose` counts as equal); with sum w = 0 the code sets sum w^2 = 1, so the size is 0.
  Each pair of models adds at most one unit of effective sample size, so an environment needs at least 12
  model pairs, e.g. 4 seeds in each configuration: in a single-seed collection no environment is kept. Among
  very many models (more than ``PAIRS_PER_FAMILY`` pairs in one family) the pairs are a uniform sample, each
  environment's effective size scaled by its pairs over its sampled pairs.
- Reported per family (the environments where one hyperparameter varies) and for all: the mean, the 90th
  percentile (numpy's linear interpolation) and the maximum of the kept environments' errors, and how many
  were kept out of how many; where none is kept, why: too few seeds (no environment has ``min_ess`` pairs of
  models, so none could be kept even with an infinite test set) or test-set noise (some could, none did). As in their figure script, each environment enters its family's list twice
  (v1 -> v2 and v2 -> v1); the mean and the maximum do not change, the percentile's interpolation can.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from sharpbench.scoring.pairs import Hparams, Pairs, coupled, joint_codes

MIN_ESS = 12.0
PAIRS_PER_FAMILY = 2_000_000   # model pairs per hyperparameter's environments; above, a uniform sample


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
    reason: str | None = None    # why no environment was kept (None when some were)


def robust_sign_error(values: Sequence[float], target: Sequence[float], hparams: Hparams, n_examples: int,
                      orientation: int = 1, min_ess: float = MIN_ESS,
                      listed: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
                      ) -> dict[str, dict[str, Any]]:
    """{family: {mean, p90, max, kept, total}} for each conditioned hyperparameter and ``all``. ``listed``: each
    hyperparameter's coupled pairs (`coupled` with ``PAIRS_PER_FAMILY``) where the caller has them already."""
    values = orientation * np.asarray(values, dtype=float)
    target = np.asarray(target, dtype=float)
    codes = Pairs.of(values, hparams, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)).codes
    names = list(codes)
    if not names:
        return {"all": asdict(_summary(np.zeros(0), 0, "no hyperparameter varies: there is no environment"))}
    config = joint_codes(list(codes.values()), len(values))
    per_config = np.bincount(config)
    found = [listed[name] if listed is not None else coupled(codes, name, len(values), PAIRS_PER_FAMILY)
             for name in names]
    first = np.concatenate([f for f, _, _ in found])
    second = np.concatenate([s for _, s, _ in found])
    family_of = np.concatenate([np.full(len(f), index) for index, (f, _, _) in enumerate(found)])
    low, high = np.minimum(config[first], config[second]), np.maximum(config[first], config[second])
    gap_difference = target[first] - target[second]
    weight = np.maximum(hoeffding_weight(gap_difference, n_examples) - 0.5, 0.0)
    loss = (1 - np.sign(values[first] - values[second]) * np.sign(gap_difference)) / 2
    configs = int(config.max()) + 1
    environment_codes, label = np.unique(low * configs + high, return_inverse=True)   # in (low, high) order
    environments = np.stack([environment_codes // configs, environment_codes % configs], axis=1)
    label = label.reshape(-1)
    weight_sum = np.bincount(label, weight, len(environments))
    squared_sum = np.bincount(label, weight ** 2, len(environments))
    squared_sum[np.isclose(weight_sum, 0)] = 1.0
    # every pair of models of an environment, or a uniform sample of them: the sample's effective size scaled up
    model_pairs = per_config[environments[:, 0]] * per_config[environments[:, 1]]
    sampled = np.bincount(label, minlength=len(environments))
    ess = weight_sum ** 2 / squared_sum * model_pairs / np.maximum(sampled, 1)
    kept = np.isclose(ess, min_ess) | (ess > min_ess)
    error = np.bincount(label, weight * loss, len(environments))[kept] / weight_sum[kept]
    env_family = np.zeros(len(environments), dtype=np.int64)
    env_family[label] = family_of

    def summary(members: np.ndarray) -> FamilySignError:
        reason = None
        if not (kept & members).any():
            reason = _reason(model_pairs[members], ess[members], min_ess, n_examples)
        return _summary(error[members[kept]], int(members.sum()), reason)

    out = {name: summary(env_family == index) for index, name in enumerate(names)}
    out["all"] = summary(np.ones(len(environments), dtype=bool))
    return {family: asdict(found) for family, found in out.items()}


def _reason(model_pairs: np.ndarray, ess: np.ndarray, min_ess: float, n_examples: int) -> str:
    """Why no environment of a family was kept."""
    if not len(model_pairs):
        return "no environment: no two configurations differ in this hyperparameter alone"
    most = int(model_pairs.max())
    if most < min_ess:
        return (f"too few seeds per configuration: an environment holds at most {most} "
                f"pair{'s' if most != 1 else ''} of models and each adds at most 1 to its effective sample size, "
                f"which must reach {min_ess:g}, even with an infinite test set")
    return (f"test-set noise: with n = {n_examples} test examples the largest effective sample size was "
            f"{float(ess.max()):.1f}, below {min_ess:g} (a pair counts only when its gaps differ by about "
            f"{math.sqrt(2 * math.log(2 / (1 - math.sqrt(0.5))) / n_examples):.3f} or more)")


def _summary(errors: np.ndarray, total: int, reason: str | None = None) -> FamilySignError:
    """Mean, 90th percentile (over each environment listed twice, as the figure script does) and maximum."""
    if not len(errors):
        return FamilySignError(None, None, None, 0, total, reason)
    listed = np.repeat(errors, 2)
    return FamilySignError(float(listed.mean()), float(np.percentile(listed, 90)), float(listed.max()),
                           len(errors), total)

