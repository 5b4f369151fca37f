"""Ranking metrics as registered units: how well a measure's values order models by a generalization target.

Each metric is declared once, with ``@register_metric``: its name (the key of the result files), a title and a
symbol for tables, whether it is multiplied by the card's orientation (``oriented``: then a larger oriented value
is a better prediction; an unoriented metric is one where larger is better whatever the sign), its range (where
intervals are clipped), and a function that evaluates it on many resamples at once. Every score entry, the result
schema, the report and the leaderboard's tables read these declarations (``METRICS``); a new metric is one
decorated function. How its replicates become intervals is declared too (``intervals``; every metric here uses
:mod:`sharpbench.scoring.intervals`' two, docs/scoring.md#intervals).

Inputs: ``values`` (the measure, one per model), target rows (one target per resample, over all models) and
optionally the models each resample draws; ``hparams`` ({hyperparameter: one value per model}). The
hyperparameter ``seed`` marks replicates, not a hyperparameter; hyperparameters with a single value are left out.

- Kendall tau-b and Spearman: scipy.stats for one evaluation; for many rows :mod:`sharpbench.scoring.correlation`
  (compiled kernels, checked against scipy).
- Granulated Kendall Psi (Jiang et al. 2020): for hyperparameter i, the groups are the models that agree on every
  other hyperparameter; Psi_i is the mean tau-b over the groups where it is defined, over the pairs of a group
  that differ in i (two models that differ only in their seed say nothing about i); Psi is the mean of the
  defined Psi_i.
- Conditional mutual information, this project's variant (``conditional_mi``): over ordered pairs of distinct
  models, V_mu = sign(mu_a - mu_b) and V_g = sign(g_a - g_b) in {-1, 0, +1}; U_S = the values of the
  hyperparameters in S in both models; I(V_mu; V_g | U_S) / H(V_g | U_S) with cells weighted by their pairs; the
  minimum over every S of one or two hyperparameters. PGDL's own computation is :mod:`sharpbench.scoring.pgdl`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats

from sharpbench.scoring import _pair_kernels, correlation, pgdl
from sharpbench.scoring.intervals import Interval, models_interval, noise_interval
from sharpbench.scoring.pairs import PAIR_SAMPLE, Hparams, Pairs, coupled, nanmean, nanmin, ratio, varied_hparams

_CHUNK_ELEMENTS = 4_000_000  # resamples x pairs evaluated at once, to bound memory

__all__ = ["METRICS", "Context", "Metric", "conditional_mutual_information", "granulated_kendall", "kendall_tau",
           "register_metric", "spearman", "tau_vs_hparams"]


# ------------------------------------------------------------------------------------------ plain scores


def kendall_tau(values: Sequence[float], target: Sequence[float]) -> float:
    """Kendall tau-b (ties handled); NaN when either side is constant or there are fewer than 2 models."""
    if len(values) < 2:
        return math.nan
    return float(stats.kendalltau(values, target, variant="b").statistic)


def spearman(values: Sequence[float], target: Sequence[float]) -> float:
    """Spearman rank correlation (ties get average ranks); NaN when either side is constant."""
    if len(values) < 2 or len(set(values)) < 2 or len(set(target)) < 2:
        return math.nan
    return float(stats.spearmanr(values, target).statistic)


def tau_vs_hparams(values: Sequence[float], hparams: Hparams) -> dict[str, float]:
    """Kendall tau-b of the measure against each (numeric) hyperparameter: what the measure tracks."""
    return {name: kendall_tau(values, hparams[name]) for name in varied_hparams(hparams)}


# ------------------------------------------------------------------------------- the evaluation context


@dataclass
class Context:
    """What the metrics of one measure on one collection share: the values, the hyperparameters, the orientation,
    and the pairs each pairwise metric reads (built once)."""

    values: np.ndarray
    hparams: Hparams
    orientation: int = 1
    _pairs: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, values: Sequence[float], hparams: Hparams, orientation: int = 1) -> "Context":
        values = np.asarray(values, dtype=float)
        for name, column in hparams.items():
            if len(column) != len(values):
                raise ValueError(f"hyperparameter '{name}' has {len(column)} values for {len(values)} models")
        return cls(values, hparams, orientation)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def every(self) -> Pairs:
        """Every pair of models (or a seeded sample of them, for many models): the pairs of the CMIs."""
        if "every" not in self._pairs:
            self._pairs["every"] = Pairs.every_or_sample(self.values, self.hparams)
        return self._pairs["every"]

    def coupled(self, limit: int = PAIR_SAMPLE) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per conditioned hyperparameter: the pairs of models that differ in it alone and their groups (`coupled`,
        a uniform sample of ``limit`` where there are more), listed once for every target."""
        key = ("coupled", limit)
        if key not in self._pairs:
            codes = Pairs.of(self.values, self.hparams, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)).codes
            self._pairs[key] = {name: coupled(codes, name, self.n, limit) for name in codes}
        return self._pairs[key]

    def granulated_groups(self) -> dict[str, tuple[Pairs, np.ndarray, int]]:
        """Per conditioned hyperparameter i: the pairs within groups of models that agree on every other one and
        differ in i (a uniform sample of `PAIR_SAMPLE` of them where there are more), each pair's group label, and
        the number of groups."""
        if "granulated" not in self._pairs:
            self._pairs["granulated"] = {
                name: (Pairs.of(self.values, self.hparams, first, second), labels,
                       int(labels.max()) + 1 if len(labels) else 1)
                for name, (first, second, labels) in self.coupled().items()}
        return self._pairs["granulated"]


def _weights(pairs: Pairs, draws: np.ndarray | None) -> np.ndarray | float:
    """resamples x pairs weights: the products of the models' multiplicities; one number (each pair's share of
    the population's pairs) without a resample of models."""
    if draws is None:
        return pairs.scale
    return pairs.weights(correlation.multiplicities(draws, pairs.n))


def _resamples(rows: np.ndarray, draws: np.ndarray | None) -> int:
    return len(rows) if draws is None else len(draws)


# ------------------------------------------------------------------------------------ the declarations


Compute = Callable[[Context, np.ndarray, "np.ndarray | None"], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Metric:
    """One ranking metric: how results name, show and bound it, and how it is evaluated on resamples.

    ``compute(context, rows, draws)`` gives, for target rows (resamples x models, or one row held fixed for every
    resample of models) and the models each resample draws (None: every model once), {name: (resamples,)} and, for a metric with parts, {name/part: (resamples,)}.
    ``details(context, target)`` gives the entry's other fields at the point estimate; ``intervals`` how the
    replicates become the interval for the test-set noise and the one over models (`sharpbench.scoring.intervals`)."""

    name: str
    title: str
    symbol: str
    oriented: bool
    bounds: tuple[float, float]
    compute: Compute
    details: Callable[[Context, np.ndarray], dict[str, Any]] | None = None
    parts: str | None = None          # what the parts are ("hparam": one per conditioned hyperparameter)
    pairwise: bool = False            # evaluated over pairs of models (chunked over resamples)
    source: str = ""
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)  # the JSON Schema of each field of `details`
    # how its replicates become intervals: (for the test-set noise, over models)
    intervals: tuple[Interval, Interval] = (noise_interval, models_interval)


METRICS: dict[str, Metric] = {}


def register_metric(name: str, *, title: str, symbol: str, oriented: bool, bounds: tuple[float, float],
                    details: Callable[[Context, np.ndarray], dict[str, Any]] | None = None,
                    parts: str | None = None, pairwise: bool = False, source: str = "",
                    fields: dict[str, dict[str, Any]] | None = None) -> Callable[[Compute], Compute]:
    """Declare a metric: the decorated function is its ``compute``."""
    def register(compute: Compute) -> Compute:
        if name in METRICS:
            raise ValueError(f"metric '{name}' is declared twice")
        METRICS[name] = Metric(name, title, symbol, oriented, bounds, compute, details, parts, pairwise, source,
                               dict(fields or {}))
        return compute
    return register


_CONDITION = {"type": "array", "items": {"type": "string"}, "maxItems": 2,
              "description": "the hyperparameters conditioned on at the minimum"}


def evaluate(context: Context, rows: np.ndarray, draws: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every registered metric on every row: {key: (resamples,)}; pairwise metrics in chunks of resamples (every
    pairwise metric sees the same chunk, so that metrics built on the same tables compute them once)."""
    rows = np.atleast_2d(np.asarray(rows, dtype=float))
    out: dict[str, np.ndarray] = {}
    for metric in METRICS.values():
        if not metric.pairwise:
            out.update(metric.compute(context, rows, draws))
    widest = max([len(context.every.first)] + [len(p.first) for p, _, _ in context.granulated_groups().values()])
    step = max(1, _CHUNK_ELEMENTS // max(1, widest))
    parts = []
    for start in range(0, _resamples(rows, draws), step):
        chunk = rows if len(rows) == 1 and draws is not None else rows[start:start + step]
        chunk_draws = None if draws is None else draws[start:start + step]
        found: dict[str, np.ndarray] = {}
        for metric in METRICS.values():
            if metric.pairwise:
                found.update(metric.compute(context, chunk, chunk_draws))
        parts.append(found)
    out.update({key: np.concatenate([part[key] for part in parts]) for key in parts[0]})
    return out


# -------------------------------------------------------------------------------------- the metrics


@register_metric("kendall_tau", title="Kendall tau-b", symbol="τ", oriented=True, bounds=(-1.0, 1.0),
                 source="scipy.stats.kendalltau (variant b)")
def _kendall(context: Context, rows: np.ndarray, draws: np.ndarray | None) -> dict[str, np.ndarray]:
    return {"kendall_tau": correlation.kendall(context.values, rows, draws)}


@register_metric("spearman", title="Spearman", symbol="ρ", oriented=True, bounds=(-1.0, 1.0),
                 source="scipy.stats.spearmanr (average ranks)")
def _spearman(context: Context, rows: np.ndarray, draws: np.ndarray | None) -> dict[str, np.ndarray]:
    return {"spearman": correlation.spearman(context.values, rows, draws)}


def _granulated_details(context: Context, target: np.ndarray) -> dict[str, Any]:
    groups = {}
    for name, (pairs, labels, count) in context.granulated_groups().items():
        taus = pairs.grouped_tau(np.ones((1, len(pairs.first))), pairs.target_sign(target), labels, count)
        groups[name] = int(np.isfinite(taus).sum())
    return {"granulated_kendall_groups": groups}


@register_metric("granulated_kendall", title="granulated Kendall Psi", symbol="Ψ", oriented=True,
                 bounds=(-1.0, 1.0), details=_granulated_details, parts="hparam", pairwise=True,
                 source="Jiang et al. 2020, 'Fantastic generalization measures and where to find them', eq. 4",
                 fields={"granulated_kendall_groups": {"type": "object", "additionalProperties": {
                     "type": "integer", "minimum": 0}, "description": "groups with a defined tau, per hyperparameter"}})
def _granulated(context: Context, rows: np.ndarray, draws: np.ndarray | None) -> dict[str, np.ndarray]:
    per = {}
    for name, (pairs, labels, count) in context.granulated_groups().items():
        weights = np.broadcast_to(_weights(pairs, draws), (_resamples(rows, draws), len(pairs.first)))
        taus = pairs.grouped_tau(weights, pairs.target_sign(rows), labels, count)
        per[name] = nanmean(taus, axis=1)
    resamples = _resamples(rows, draws)
    psi = nanmean(np.stack(list(per.values()), axis=1), axis=1) if per else np.full(resamples, np.nan)
    return {"granulated_kendall": psi, **{f"granulated_kendall/{name}": value for name, value in per.items()}}


def _condition_sets(names: list[str]) -> list[tuple[str, ...]]:
    """Every set of one or two hyperparameters."""
    return [(name,) for name in names] + list(itertools.combinations(names, 2))


def _conditional_mi(table: np.ndarray) -> np.ndarray:
    """I(V_mu; V_g | U) / H(V_g | U) for each resample, from `Pairs.sign_table`."""
    # In counts (c log c summed over a table's entries, no division per cell): N I(V_mu; V_g | U) =
    # sum c(u, v, t) log c(u, v, t) - sum c(u, v) log c(u, v) - sum c(u, t) log c(u, t) + sum c(u) log c(u),
    # and N H(V_g | U) = sum c(u) log c(u) - sum c(u, t) log c(u, t).
    entries, measure_part, target_part, cell, total = _pair_kernels.information_sums(
        np.ascontiguousarray(table, dtype=float)).T
    information = entries - measure_part - target_part + cell
    entropy = cell - target_part
    # rounding leaves about 1e-16 of the total where the entropy is exactly 0: that is undefined, not 0/tiny
    return ratio(information, np.where(entropy > 1e-9 * total, entropy, 0.0))


def _smallest(scores: dict[tuple[str, ...], np.ndarray], resamples: int) -> np.ndarray:
    if not scores:
        return np.full(resamples, np.nan)
    return nanmin(np.stack(list(scores.values()), axis=1), axis=1)


def _argmin(scores: dict[tuple[str, ...], np.ndarray]) -> list[str]:
    defined = {condition: float(value[0]) for condition, value in scores.items() if math.isfinite(value[0])}
    return list(min(defined, key=defined.__getitem__)) if defined else []


def _tables(context: Context, rows: np.ndarray, draws: np.ndarray | None) -> dict[tuple[str, ...], np.ndarray]:
    """The sign tables of every condition either CMI reads, per row; the last evaluation is kept (holding its
    arrays keeps the identity test meaningful), so that the CMIs of one chunk count the pairs once."""
    cached = context._pairs.get("tables")
    if cached is not None and cached[0] is rows and cached[1] is draws:
        return cached[2]
    pairs = context.every
    names = list(pairs.codes)
    weights, signs = _weights(pairs, draws), pairs.target_sign(rows)
    tables = {condition: pairs.sign_table(weights, signs, condition) for condition in pgdl.condition_sets(names)}
    for condition in _condition_sets(names):
        if condition in tables:
            continue
        # a single hyperparameter: summed from a pair that holds it, unless that pair's table left combinations out
        finer = next(pair for pair in tables if set(condition) <= set(pair))
        tables[condition] = (pairs.marginal(tables[finer], finer, condition) if pairs.cell_pairs(finer).complete
                             else pairs.sign_table(weights, signs, condition))
    context._pairs["tables"] = (rows, draws, tables)
    return tables


def _project_cmi(context: Context, rows: np.ndarray, draws: np.ndarray | None) -> dict[tuple[str, ...], np.ndarray]:
    tables = _tables(context, rows, draws)
    return {c: _conditional_mi(tables[c]) for c in _condition_sets(list(context.every.codes))}


@register_metric("conditional_mi", title="conditional mutual information (this project's variant)",
                 symbol="CMI", oriented=False, bounds=(0.0, 1.0), pairwise=True,
                 details=lambda context, target: {
                     "conditional_mi_condition": _argmin(_project_cmi(context, target[None], None))},
                 source="Jiang et al. 2020, eq. 5, over ordered pairs of distinct models with three-valued signs",
                 fields={"conditional_mi_condition": _CONDITION})
def _cmi(context: Context, rows: np.ndarray, draws: np.ndarray | None) -> dict[str, np.ndarray]:
    return {"conditional_mi": _smallest(_project_cmi(context, rows, draws), _resamples(rows, draws))}


def _pgdl_scores(context: Context, rows: np.ndarray, draws: np.ndarray | None) -> dict[tuple[str, ...], np.ndarray]:
    """PGDL's score for each condition (each pair of hyperparameters), per row; the last evaluation is kept, so that
    the refused and the filled-cells metrics read one computation."""
    cached = context._pairs.get("pgdl")   # (rows, draws, scores): holding the arrays keeps `is` meaningful
    if cached is not None and cached[0] is rows and cached[1] is draws:
        return cached[2]
    pairs = context.every
    tables = _tables(context, rows, draws)
    counts = np.ones((len(rows), pairs.n)) if draws is None else correlation.multiplicities(draws, pairs.n)
    scores = {condition: pgdl.score(pairs, tables[condition], counts, condition, context.orientation)
              for condition in pgdl.condition_sets(list(pairs.codes))}
    context._pairs["pgdl"] = (rows, draws, scores)
    return scores


def _pgdl_details(context: Context, target: np.ndarray) -> dict[str, Any]:
    refusal = pgdl.grid_refusal(context.hparams)
    return {"conditional_mi_pgdl_condition": [] if refusal else _argmin(_pgdl_scores(context, target[None], None)),
            "conditional_mi_pgdl_refused": refusal}


@register_metric("conditional_mi_pgdl", title="conditional mutual information, PGDL's scoring program",
                 symbol="CMI (PGDL)", oriented=False, bounds=(0.0, 1.0), pairwise=True, details=_pgdl_details,
                 source="PGDL 2020 starting kit, scoring_program/mutual_information.py; refused, as the program "
                        "refuses them, on an incomplete or non-unique grid",
                 fields={"conditional_mi_pgdl_condition": _CONDITION,
                         "conditional_mi_pgdl_refused": {"type": ["string", "null"], "description":
                                                         "why PGDL's program refuses the grid (null: it does not)"}})
def _cmi_pgdl(context: Context, rows: np.ndarray, draws: np.ndarray | None) -> dict[str, np.ndarray]:
    if pgdl.grid_refusal(context.hparams) is not None:
        return {"conditional_mi_pgdl": np.full(_resamples(rows, draws), np.nan)}
    return {"conditional_mi_pgdl": _smallest(_pgdl_scores(context, rows, draws), _resamples(rows, draws))}


@register_metric("conditional_mi_pgdl_filled", title="conditional mutual information, PGDL's over the filled cells",
                 symbol="CMI (PGDL, filled)", oriented=False, bounds=(0.0, 1.0), pairwise=True,
                 details=lambda context, target: {
                     "conditional_mi_pgdl_filled_condition": _argmin(_pgdl_scores(context, target[None], None))},
                 source="PGDL's computation with the mean over the cells that hold model pairs: the same on a "
                        "complete grid, and defined on an incomplete one",
                 fields={"conditional_mi_pgdl_filled_condition": _CONDITION})
def _cmi_pgdl_filled(context: Context, rows: np.ndarray, draws: np.ndarray | None) -> dict[str, np.ndarray]:
    return {"conditional_mi_pgdl_filled": _smallest(_pgdl_scores(context, rows, draws), _resamples(rows, draws))}


# ------------------------------------------------------------------- single evaluations, for the tests


@dataclass(frozen=True)
class GranulatedKendall:
    """Psi (the mean over hyperparameters), Psi_i per hyperparameter, and how many groups gave each Psi_i."""

    mean: float
    per_hparam: dict[str, float]
    groups: dict[str, int]


def granulated_kendall(values: Sequence[float], target: Sequence[float], hparams: Hparams) -> GranulatedKendall:
    """Granulated Kendall Psi over the groups of models that differ only in one hyperparameter."""
    context = Context.of(values, hparams)
    target = np.asarray(target, dtype=float)
    found = _granulated(context, target[None], None)
    return GranulatedKendall(float(found["granulated_kendall"][0]),
                             {name: float(found[f"granulated_kendall/{name}"][0])
                              for name in context.granulated_groups()},
                             _granulated_details(context, target)["granulated_kendall_groups"])


def conditional_mutual_information(values: Sequence[float], target: Sequence[float],
                                   hparams: Hparams) -> pgdl.ConditionalMI:
    """This project's CMI: the minimum over sets of one or two hyperparameters of I(V_mu; V_g | U) / H(V_g | U)."""
    context = Context.of(values, hparams)
    scores = _project_cmi(context, np.asarray(target, dtype=float)[None], None)
    return pgdl.smallest(scores)
