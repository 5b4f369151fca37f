"""Scores: every registered ranking metric of a measure against each generalization target, with an interval for
the test-set noise and one over models, beside the target's noise ceiling and the robust sign error.

What each number estimates (docs/scoring.md#intervals):
- a metric's point value is the metric against the observed target; ``<metric>_ci`` is the 95% interval of its
  expected value over evaluation sets of the collection's sizes drawn from the same distributions, for these
  models and these values (the point value is an unbiased estimate of it); the interval comes from evaluation
  sets resampled around the target's plausible truth (:mod:`sharpbench.scoring.noise`), centred on the point;
- ``<metric>_ci_models``: the percentile interval over models drawn with replacement, the target held as observed:
  how the metric would vary over other models from the same population, ignoring the test-set noise;
- ``noise_ceiling``: the same expected value for the oracle measure (the true expected target), with its
  interval (:mod:`sharpbench.scoring.ceiling`); ``kendall_tau_of_ceiling``: the oriented tau as a fraction of
  it, with an interval from the paired replicates, and undefined where the ceiling's interval reaches 0.

The metrics are declared in :mod:`sharpbench.scoring.metrics`; targets and their resampling over examples in
:mod:`sharpbench.scoring.resampling`; the robust sign error in :mod:`sharpbench.scoring.sign_error`."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from sharpbench.jsonsafe import finite_or_none
from sharpbench.scoring.ceiling import noise_ceiling as ceiling_of
from sharpbench.scoring.intervals import models_interval, pivoted
from sharpbench.scoring.metrics import METRICS, Context, evaluate
from sharpbench.scoring.noise import pair_noise, plausible_truth, shrink_factor
from sharpbench.scoring.pairs import Hparams
from sharpbench.scoring.resampling import (Bootstrap, OutcomeSet, Target, check_sets, full_sums, resampled_sums,
                                           standard_targets, target_values)
from sharpbench.scoring.sign_error import PAIRS_PER_FAMILY, robust_sign_error

__all__ = ["Bootstrap", "OutcomeSet", "Scores", "Target", "noise_ceiling", "numeric_hparams", "score_targets",
           "standard_targets", "target_values"]

NO_OUTCOMES = ("the collection keeps no per-example outcomes (e.g. imported from a table of errors), so the "
               "test-set noise cannot be resampled")
RANKED = "kendall_tau"


@dataclass(frozen=True)
class Scores:
    """Per target, the JSON-able score entry; and the oriented Kendall tau's replicates (the point minus each
    replicate's deviation, on the same resamples for every measure of a collection), which the leaderboard ranks
    measures with."""

    targets: dict[str, dict[str, Any]]
    replicates: dict[str, np.ndarray]


def _oriented(interval: list[float], orientation: int) -> list[float]:
    low, high = orientation * interval[0], orientation * interval[1]
    return [min(low, high), max(low, high)]


@dataclass
class _Target:
    """One target's observations: its values, and (with per-example outcomes) each resample's noise and its pair
    noise."""

    observed: np.ndarray
    noise: np.ndarray | None = None
    pair_noise: float | None = None


def _entry(name: str, target: Target, found: _Target, context: Context, point: dict[str, np.ndarray],
           models: dict[str, np.ndarray], noise: dict[str, np.ndarray] | None, sets: Mapping[str, OutcomeSet] | None,
           bootstrap: Bootstrap) -> dict[str, Any]:
    """The score entry of one target (floats, NaN where undefined; made JSON-able by the caller)."""
    orientation = context.orientation
    notes: dict[str, str] = {}
    entry: dict[str, Any] = {}
    oriented: dict[str, Any] = {}
    for metric in METRICS.values():
        keys = [metric.name] + sorted(key for key in point if key.startswith(metric.name + "/"))
        for key in keys:
            value = float(point[key][0])
            noise_ci, models_ci = metric.intervals
            interval = (noise_ci(noise[key], value, metric.bounds, bootstrap) if noise is not None
                        else [math.nan, math.nan])
            interval_models = models_ci(models[key], value, metric.bounds, bootstrap)
            if key == metric.name:
                entry.update({key: value, f"{key}_ci": interval, f"{key}_ci_models": interval_models})
                if metric.oriented:
                    oriented.update({key: orientation * value, f"{key}_ci": _oriented(interval, orientation),
                                     f"{key}_ci_models": _oriented(interval_models, orientation)})
            else:
                part = key.split("/", 1)[1]
                entry.setdefault(f"{metric.name}_per_{metric.parts}", {})[part] = value
                entry.setdefault(f"{metric.name}_per_{metric.parts}_ci", {})[part] = interval
        if metric.details is not None:
            entry.update(metric.details(context, found.observed))
    refusal = entry.get("conditional_mi_pgdl_refused")
    if refusal:
        notes["conditional_mi_pgdl"] = f"refused as PGDL's scoring program refuses it: {refusal}"
    entry["oriented"] = oriented
    if noise is None or found.noise is None or found.pair_noise is None:
        notes["intervals"] = notes["noise_ceiling"] = NO_OUTCOMES
        entry.update({"noise_ceiling": None, "noise_ceiling_ci": [None, None], "reliability": None,
                      "kendall_tau_of_ceiling": None, "kendall_tau_of_ceiling_ci": [None, None]})
    else:
        ceiling, ceiling_ci, ceiling_replicates = ceiling_of(found.observed, found.noise, found.pair_noise, bootstrap)
        entry.update({"noise_ceiling": ceiling, "noise_ceiling_ci": ceiling_ci,
                      "reliability": shrink_factor(found.observed, found.pair_noise) ** 2})
        entry.update(_fraction_of_ceiling(orientation * entry[RANKED], orientation * noise[RANKED], ceiling,
                                          ceiling_ci, ceiling_replicates, bootstrap, notes))
    sign_errors, n_examples = _sign_error_entry(name, target, sets, context, found.observed, notes)
    entry.update({"robust_sign_error": sign_errors, "n_examples": n_examples,
                  "examples_resampled": noise is not None, "notes": notes})
    return entry


def _fraction_of_ceiling(tau: float, tau_replicates: np.ndarray, ceiling: float, ceiling_ci: list[float],
                         ceiling_replicates: np.ndarray, bootstrap: Bootstrap, notes: dict[str, str]) -> dict[str, Any]:
    """The oriented tau over the ceiling, and the percentile interval of the ratio of their paired replicates;
    undefined where the ceiling's interval reaches 0 (the ratio is then unbounded)."""
    if not (math.isfinite(tau) and math.isfinite(ceiling)):
        return {"kendall_tau_of_ceiling": None, "kendall_tau_of_ceiling_ci": [None, None]}
    if not ceiling_ci[0] > 0:
        notes["kendall_tau_of_ceiling"] = "not shown: the ceiling's interval reaches 0, so the ratio is unbounded"
        return {"kendall_tau_of_ceiling": None, "kendall_tau_of_ceiling_ci": [None, None]}
    paired = pivoted(tau_replicates, tau)[: len(ceiling_replicates)] / ceiling_replicates
    return {"kendall_tau_of_ceiling": tau / ceiling,
            "kendall_tau_of_ceiling_ci": models_interval(paired, tau / ceiling, bootstrap=bootstrap)}


def _sign_error_entry(name: str, target: Target, sets: Mapping[str, OutcomeSet] | None, context: Context,
                      observed: np.ndarray, notes: dict[str, str]) -> tuple[dict[str, Any] | None, int | None]:
    """The robust sign error of a target whose outcomes are 0/1 errors (Hoeffding's weights need outcomes in
    [0, 1]), with n the size of the set the target is measured on (its first term's: the test set for the gap);
    otherwise None and a note saying why."""
    if sets is None:
        notes["robust_sign_error"] = NO_OUTCOMES + " (its weights need the test set's size)"
        return None, None
    if not all(sets[set_name].counted(kind) for set_name, kind, _ in target.terms):
        notes["robust_sign_error"] = (f"'{name}' reads outcomes outside {{0, 1}} (a loss or a squared error), "
                                      "where Hoeffding's weights do not apply")
        return None, None
    n_examples = sets[target.terms[0][0]].examples
    return (robust_sign_error(context.values, observed, context.hparams, n_examples, context.orientation,
                              listed=context.coupled(PAIRS_PER_FAMILY)), n_examples)


def score_targets(values: Sequence[float], targets: Mapping[str, Target], sets: Mapping[str, OutcomeSet] | None,
                  hparams: Hparams, *, bootstrap: Bootstrap = Bootstrap(), orientation: int = 1,
                  aggregates: Mapping[str, Sequence[float]] | None = None) -> Scores:
    """Every metric of the measure against every target, with its test-set-noise and model intervals.

    ``orientation`` is +1 when the card says ``higher_means: worse`` and -1 for ``better``. ``sets`` holds the
    per-example outcomes of every evaluation set; ``sets=None`` (a collection without them) takes each target's
    values from ``aggregates``, and then only the model intervals are computed."""
    if orientation not in (1, -1):
        raise ValueError(f"orientation must be +1 (higher means worse) or -1 (better), got {orientation}")
    context = Context.of(values, hparams, orientation)
    model_draws = bootstrap.indices(context.n).astype(np.int32)     # the same draws in half the memory
    if sets is None:
        missing = [name for name in targets if name not in (aggregates or {})]
        if missing:
            raise ValueError(f"without per-example outcomes every target needs its values in `aggregates`; "
                             f"missing: {missing}")
    else:
        for target in targets.values():
            check_sets(target, sets)
        full = full_sums(sets, {key for target in targets.values() for key in target.needed})
        uses = Counter(key for target in targets.values() for key in target.needed)
        resampled: dict[tuple[str, str], np.ndarray] = {}
    entries: dict[str, dict[str, Any]] = {}
    replicates: dict[str, np.ndarray] = {}
    for name, target in targets.items():
        # one target at a time: its resampled noise is resamples x models; each set's resampled sums are drawn
        # when a target first reads them and let go after the last one has (the draws depend on the seed alone)
        if sets is None:
            found = _Target(np.asarray(aggregates[name], dtype=float))
        else:
            resampled.update(resampled_sums(sets, target.needed - resampled.keys(), bootstrap))
            observed = target.combine(full, sets)
            noise = target.combine(resampled, sets)
            noise -= observed                     # in place: resamples x models is the largest array here
            found = _Target(observed, noise, pair_noise(target, sets))
            for key in target.needed:
                uses[key] -= 1
                if not uses[key]:
                    del resampled[key]
        observed = found.observed
        point = evaluate(context, observed[None])
        models = evaluate(context, observed[None], model_draws)
        noise = None
        if found.noise is not None:
            noise = evaluate(context, plausible_truth(observed, found.pair_noise) + found.noise)
        entries[name] = finite_or_none(_entry(name, target, found, context, point, models, noise, sets, bootstrap))
        tau = orientation * float(point[RANKED][0])
        replicates[name] = (pivoted(orientation * noise[RANKED], tau) if noise is not None
                            else orientation * models[RANKED])
    return Scores(entries, replicates)


def noise_ceiling(target: Target, sets: Mapping[str, OutcomeSet], *,
                  bootstrap: Bootstrap = Bootstrap()) -> tuple[float, list[float]]:
    """(estimate, [low, high]): one target's noise ceiling and its interval."""
    check_sets(target, sets)
    observed = target_values(target, sets)
    noise = target.combine(resampled_sums(sets, target.needed, bootstrap), sets) - observed
    estimate, interval, _ = ceiling_of(observed, noise, pair_noise(target, sets), bootstrap)
    return estimate, interval


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
