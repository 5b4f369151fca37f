"""Scores: every ranking metric of a measure against each generalization target, with intervals that resample
models only and models and test examples together, beside the target's noise ceiling and the robust sign error.

The metrics are pure functions in :mod:`sharpbench.scoring.metrics` (and :mod:`sharpbench.scoring.pgdl`); targets and their
resampling over examples in :mod:`sharpbench.scoring.resampling`; the ceiling in :mod:`sharpbench.scoring.ceiling`; the robust
sign error in :mod:`sharpbench.scoring.sign_error`. This module names the results as the report and the leaderboard do
(``kendall_tau``, ``kendall_tau_ci``, ...). Definitions and sources: docs/scoring.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from sharpbench.scoring.ceiling import ceiling_replicates, noise_ceiling, split_half_estimate
from sharpbench.jsonsafe import finite_or_none
from sharpbench.scoring.metrics import (Bootstrap, Hparams, conditional_mutual_information, granulated_kendall, kendall_tau,
                                metric_replicates, spearman)
from sharpbench.scoring.pgdl import conditional_mi_pgdl
from sharpbench.scoring.resampling import (OutcomeSet, ResampledMeans, Target, needed_outcomes, resample_examples,
                                   standard_targets, target_values)
from sharpbench.scoring.sign_error import robust_sign_error

__all__ = ["Bootstrap", "OutcomeSet", "Scores", "Target", "noise_ceiling", "numeric_hparams", "score_targets",
           "standard_targets", "target_values"]

NO_OUTCOMES = ("the collection keeps no per-example outcomes (e.g. imported from a table of errors), so the "
               "targets cannot be resampled over examples")


@dataclass(frozen=True)
class Scores:
    """Per target, the JSON-able score entry; and the oriented Kendall tau on each two-way resample (each
    model-only resample when there are no per-example outcomes), which the leaderboard ranks measures with."""

    targets: dict[str, dict[str, Any]]
    replicates: dict[str, np.ndarray]


def _oriented_interval(interval: list[float], orientation: int) -> list[float]:
    """An interval of a score multiplied by the orientation."""
    low, high = orientation * interval[0], orientation * interval[1]
    return [min(low, high), max(low, high)]


def _sign_error_entry(name: str, target: Target, sets: Mapping[str, OutcomeSet] | None, values: np.ndarray,
                      observed: np.ndarray, hparams: Hparams, orientation: int,
                      notes: dict[str, str]) -> tuple[dict[str, Any] | None, int | None]:
    """The robust sign error of a target whose outcomes are 0/1 errors (Hoeffding's weights need outcomes in
    [0, 1]), with n the smallest of its sets; otherwise None and a note saying why."""
    if sets is None:
        notes["robust_sign_error"] = NO_OUTCOMES + " (its weights need the test set's size)"
        return None, None
    bounded = all(kind == "error" and np.all((sets[set_name].error >= 0) & (sets[set_name].error <= 1))
                  for set_name, kind, _ in target.terms)
    if not bounded:
        notes["robust_sign_error"] = (f"'{name}' reads outcomes outside [0, 1] (a loss or a squared error), "
                                      "where Hoeffding's weights do not apply")
        return None, None
    n_examples = min(sets[set_name].examples for set_name in target.sets)
    return robust_sign_error(values, observed, hparams, n_examples, orientation), n_examples


def _entry(name: str, target: Target, values: np.ndarray, observed: np.ndarray, hparams: Hparams,
           bootstrap: Bootstrap, orientation: int, model_only: dict[str, np.ndarray],
           two_way: dict[str, np.ndarray] | None, sets: Mapping[str, OutcomeSet] | None,
           means: Mapping[tuple[str, str], ResampledMeans] | None, indices: np.ndarray) -> dict[str, Any]:
    """The score entry of one target (floats, NaN where undefined; made JSON-able by the caller)."""
    notes: dict[str, str] = {}

    def models(key: str) -> list[float]:
        return list(bootstrap.interval(model_only[key]))

    granulated = granulated_kendall(values, observed, hparams)
    conditional = conditional_mutual_information(values, observed, hparams)
    pgdl = conditional_mi_pgdl(values, observed, hparams, orientation)
    tau, rho = kendall_tau(values, observed), spearman(values, observed)
    estimates = {"kendall_tau": tau, "spearman": rho, "granulated_kendall": granulated.mean,
                 "conditional_mi": conditional.value, "conditional_mi_pgdl": pgdl.value,
                 **{f"granulated_kendall/{h}": value for h, value in granulated.per_hparam.items()}}

    def both(key: str) -> list[float | None]:
        if two_way is None:
            return [None, None]
        bounds = (0.0, 1.0) if key.startswith("conditional_mi") else (-1.0, 1.0)
        return list(bootstrap.basic_interval(two_way[key], estimates[key], bounds))

    if two_way is None or sets is None or means is None:
        notes["two_way"] = notes["noise_ceiling"] = NO_OUTCOMES
        ceiling, ceiling_ci = None, [None, None]
    else:
        ceiling = split_half_estimate(target, sets, seed=bootstrap.seed)
        ceiling_ci = list(bootstrap.interval(ceiling_replicates(target, means, indices)))
    sign_errors, n_examples = _sign_error_entry(name, target, sets, values, observed, hparams, orientation, notes)
    tau_ci = both("kendall_tau")
    return {
        "kendall_tau": tau, "kendall_tau_ci": tau_ci, "kendall_tau_ci_models": models("kendall_tau"),
        "spearman": rho, "spearman_ci": both("spearman"), "spearman_ci_models": models("spearman"),
        "granulated_kendall": granulated.mean, "granulated_kendall_ci": both("granulated_kendall"),
        "granulated_kendall_ci_models": models("granulated_kendall"),
        "granulated_kendall_per_hparam": granulated.per_hparam,
        "granulated_kendall_per_hparam_ci": {h: both(f"granulated_kendall/{h}") for h in granulated.per_hparam},
        "granulated_kendall_groups": granulated.groups,
        "conditional_mi": conditional.value, "conditional_mi_ci": both("conditional_mi"),
        "conditional_mi_ci_models": models("conditional_mi"), "conditional_mi_condition": list(conditional.condition),
        "conditional_mi_pgdl": pgdl.value, "conditional_mi_pgdl_ci": both("conditional_mi_pgdl"),
        "conditional_mi_pgdl_ci_models": models("conditional_mi_pgdl"),
        "conditional_mi_pgdl_condition": list(pgdl.condition),
        "oriented": {
            "kendall_tau": orientation * tau,
            "kendall_tau_ci": _oriented_interval(tau_ci, orientation) if two_way is not None else [None, None],
            "kendall_tau_ci_models": _oriented_interval(models("kendall_tau"), orientation),
            "spearman": orientation * rho,
            "spearman_ci": _oriented_interval(both("spearman"), orientation) if two_way is not None else [None, None],
            "granulated_kendall": orientation * granulated.mean,
            "granulated_kendall_ci": (_oriented_interval(both("granulated_kendall"), orientation)
                                      if two_way is not None else [None, None]),
        },
        "noise_ceiling": ceiling, "noise_ceiling_ci": ceiling_ci,
        "kendall_tau_of_ceiling": orientation * tau / ceiling if ceiling else None,
        "robust_sign_error": sign_errors, "n_examples": n_examples,
        "two_way": two_way is not None,
        "notes": notes,
    }


def score_targets(values: Sequence[float], targets: Mapping[str, Target], sets: Mapping[str, OutcomeSet] | None,
                  hparams: Hparams, *, bootstrap: Bootstrap = Bootstrap(), orientation: int = 1,
                  aggregates: Mapping[str, Sequence[float]] | None = None) -> Scores:
    """Every metric of the measure against every target, with model-only and two-way intervals.

    ``orientation`` is +1 when the card says ``higher_means: worse`` and -1 for ``better``. ``sets`` holds the
    per-example outcomes of every evaluation set; ``sets=None`` (a collection without them) takes each target's
    values from ``aggregates``, and then only the model-only intervals are computed."""
    if orientation not in (1, -1):
        raise ValueError(f"orientation must be +1 (higher means worse) or -1 (better), got {orientation}")
    values = np.asarray(values, dtype=float)
    indices = bootstrap.indices(len(values))
    if sets is None:
        missing = [name for name in targets if name not in (aggregates or {})]
        if missing:
            raise ValueError(f"without per-example outcomes every target needs its values in `aggregates`; "
                             f"missing: {missing}")
        observed = {name: np.asarray(aggregates[name], dtype=float) for name in targets}
        means = None
    else:
        observed = {name: target_values(target, sets) for name, target in targets.items()}
        means = resample_examples(sets, needed_outcomes(targets), bootstrap)
    entries: dict[str, dict[str, Any]] = {}
    replicates: dict[str, np.ndarray] = {}
    for name, target in targets.items():
        fixed = np.broadcast_to(observed[name], (len(indices), len(values)))
        if means is None:
            model_only, two_way = metric_replicates(values, fixed, hparams, indices, orientation), None
        else:  # both bootstraps in one pass: the fixed target's resamples, then the resampled targets'
            both = metric_replicates(values, np.concatenate([fixed, target.combine({key: value.full for key, value
                                                                                     in means.items()})]),
                                     hparams, np.concatenate([indices, indices]), orientation)
            model_only = {key: value[: len(indices)] for key, value in both.items()}
            two_way = {key: value[len(indices):] for key, value in both.items()}
        entries[name] = finite_or_none(_entry(name, target, values, observed[name], hparams, bootstrap, orientation,
                                              model_only, two_way, sets, means, indices))
        replicates[name] = orientation * (two_way if two_way is not None else model_only)["kendall_tau"]
    return Scores(entries, replicates)


def numeric_hparams(hparams: Sequence[Mapping[str, Any]], grid: Mapping[str, Sequence[Any]]) -> dict[str, list[float]]:
    """Per-model hyperparameters as numeric columns: numbers as they are, other values (e.g. an augmentation
    name) by their position in the card's grid, so that a Kendall tau against them is defined."""
    names = list(dict.fromkeys(name for record in hparams for name in record))
    columns: dict[str, list[float]] = {}
    for name in names:
        column = [record.get(name) for record in hparams]
        if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in column):
            columns[name] = [float(v) for v in column]
        else:
            order = list(grid.get(name, [])) + sorted({str(v) for v in column} - {str(v) for v in grid.get(name, [])})
            positions = {str(value): index for index, value in enumerate(order)}
            columns[name] = [float(positions[str(v)]) for v in column]
    return columns
