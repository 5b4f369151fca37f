"""The whole publication from nothing (`sharpbench leaderboard reproduce`): every registered measure on every
collection built here at its card's defaults, and the study's radius sweeps of the eight sharpness variants, each
evaluated (values the results store holds are reused: the key says they are current), published and then built.

The sweeps follow the study's evaluation script (tml-epfl/sharpness-vs-generalization, sh/eval_sharpness_final.sh):
four doubling radii per variant, and for the adaptive variants each radius again with `normalize_logits`. The
study's radii were chosen for CIFAR-10 models; here the four lie around each card's default radius (chosen on
digits-mlp): default x 1/4, 1/2, 1 and 2. A regression's single output has no logits to normalize (centred, it is
0), so a collection with one output gets the radii without `normalize_logits`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from sharpbench.cards.discovery import Registry
from sharpbench.cards.measure_card import MeasureSpec
from sharpbench.collection.collection import Collection
from sharpbench.errors import SharpbenchError
from sharpbench.evaluation.report import Report
from sharpbench.evaluation.run import evaluate
from sharpbench.evaluation.store import ResultStore
from sharpbench.leaderboard.results import publish

SWEEP_FACTORS = (0.25, 0.5, 1.0, 2.0)
SWEPT = "rho"
NORMALIZE = "normalize_logits"


@dataclass(frozen=True)
class Step:
    """One evaluation of the publication: a measure on a collection with these parameter overrides."""

    collection: str
    measure: str
    overrides: tuple[tuple[str, Any], ...] = ()

    def label(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.overrides)
        return f"{self.collection}/{self.measure}" + (f" ({settings})" if settings else "")


@dataclass
class Outcome:
    """What a step gave: the published file, or why nothing was (a measure that does not apply)."""

    step: Step
    path: Path | None = None
    skipped: str | None = None
    computed: int = 0
    seconds: float = 0.0


def sweep_overrides(spec: MeasureSpec, outputs: int = 2) -> list[dict[str, Any]]:
    """The study's sweep of a sharpness card: each radius of the grid around its default, and for a card with
    `normalize_logits` whose `adaptive` is fixed true, each radius again with normalized logits, unless the models
    have a single output (`outputs`, a regression): centred, it is 0 for every model, and every tau is undefined.
    [] for a card without a radius."""
    if SWEPT not in spec.params or NORMALIZE not in spec.params:
        return []
    default = spec.params[SWEPT].default
    radii = [default * factor for factor in SWEEP_FACTORS]
    settings = [{SWEPT: rho} for rho in radii]
    if spec.fixed.get("adaptive") and outputs > 1:
        settings += [{SWEPT: rho, NORMALIZE: True} for rho in radii]
    return settings


def plan(registry: Registry, collections: list[str], measures: list[str], sweeps: bool = True) -> list[Step]:
    """Every measure at its defaults on every collection, then the sweeps, collection by collection."""
    steps = []
    for collection in collections:
        steps += [Step(collection, measure) for measure in measures]
        outputs = registry.collection(collection).num_classes
        if sweeps:
            for measure in measures:
                spec = registry.measure(measure)
                default = {SWEPT: spec.params[SWEPT].default} if SWEPT in spec.params else None
                steps += [Step(collection, measure, tuple(sorted(o.items())))
                          for o in sweep_overrides(spec, outputs) if o != default]     # the default is its own step
    return steps


def run_step(step: Step, registry: Registry, collection: Collection, store: ResultStore, leaderboard: Path,
             options: dict[str, Any]) -> Outcome:
    """Evaluate and publish one step; a measure that does not apply to the collection (its error says why) is
    skipped with that reason, and the run goes on."""
    spec = registry.measure(step.measure)
    start = time.perf_counter()
    try:
        evaluation = evaluate(spec, collection, store, overrides=dict(step.overrides), **options)
    except SharpbenchError as error:
        return Outcome(step, skipped=str(error).splitlines()[0], seconds=time.perf_counter() - start)
    path = publish(Report.of(evaluation), leaderboard)
    return Outcome(step, path, computed=evaluation.computed, seconds=time.perf_counter() - start)


@dataclass
class Reproduction:
    """The outcomes of a reproduction, in order, and its wall time."""

    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0


def reproduce(steps: list[Step], registry: Registry, open_built: Callable[[str], Collection], store: ResultStore,
              leaderboard: Path, device: torch.device, report: Callable[[Outcome], None]) -> Reproduction:
    """Run every step (collections opened once each), calling `report` after each."""
    start, done = time.perf_counter(), Reproduction()
    opened: dict[str, Collection] = {}
    for step in steps:
        if step.collection not in opened:
            opened[step.collection] = open_built(step.collection)
        outcome = run_step(step, registry, opened[step.collection], store, leaderboard,
                           {"device": device, "progress": False})
        done.outcomes.append(outcome)
        report(outcome)
    done.seconds = time.perf_counter() - start
    return done
