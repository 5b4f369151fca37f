"""Scores: every ranking metric of a measure against each generalization target, with bootstrap intervals.

The metrics themselves are pure functions in :mod:`sharpbench.metrics`; this module names them as the
report and the leaderboard do (``kendall_tau``, ``kendall_tau_ci``, ...)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from sharpbench.metrics import (Bootstrap, Hparams, bootstrap_replicates, conditional_mutual_information,
                                granulated_kendall, kendall_tau, sign_error, spearman)


def score_target(values: Sequence[float], target: Sequence[float], hparams: Hparams, *,
                 bootstrap: Bootstrap = Bootstrap(), expected_sign: int = 1) -> dict[str, Any]:
    """Every metric of the measure against one target, each with its bootstrap interval [low, high].

    ``expected_sign`` is +1 when a larger value is expected to mean a larger target (worse generalization)
    and -1 otherwise; it orients the sign error only (tau, Spearman and Psi keep the raw sign; the
    conditional MI does not depend on it)."""
    replicates = bootstrap_replicates(values, target, hparams, bootstrap, expected_sign)

    def interval(key: str) -> list[float]:
        return list(bootstrap.interval(replicates[key]))

    granulated = granulated_kendall(values, target, hparams)
    conditional = conditional_mutual_information(values, target, hparams)
    errors = sign_error([expected_sign * v for v in values], target, hparams)
    return {
        "kendall_tau": kendall_tau(values, target),
        "kendall_tau_ci": interval("kendall_tau"),
        "spearman": spearman(values, target),
        "spearman_ci": interval("spearman"),
        "granulated_kendall": granulated.mean,
        "granulated_kendall_ci": interval("granulated_kendall"),
        "granulated_kendall_per_hparam": granulated.per_hparam,
        "granulated_kendall_per_hparam_ci": {name: interval(f"granulated_kendall/{name}")
                                             for name in granulated.per_hparam},
        "granulated_kendall_groups": granulated.groups,
        "conditional_mi": conditional.value,
        "conditional_mi_ci": interval("conditional_mi"),
        "conditional_mi_condition": list(conditional.condition),
        "sign_error_mean": errors.mean,
        "sign_error_mean_ci": interval("sign_error_mean"),
        "sign_error_max": errors.max,
        "sign_error_max_ci": interval("sign_error_max"),
        "sign_error_environments": errors.environments,
    }


def score_targets(values: Sequence[float], targets: Mapping[str, Sequence[float]], hparams: Hparams, *,
                  bootstrap: Bootstrap = Bootstrap(), expected_sign: int = 1) -> dict[str, dict[str, Any]]:
    """{target name: score_target(...)} for every target, in the given order (the same resamples for all)."""
    return {name: score_target(values, target, hparams, bootstrap=bootstrap, expected_sign=expected_sign)
            for name, target in targets.items()}


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
