"""Sweeps: one measure evaluated once per value of one of its parameters, over one collection.

The values come from text ('0.0005,0.001,0.002'), from a grid family the measure's card documents (its
``grids:`` section, e.g. the study's radii per architecture), or from a Python sequence; the card types each.
From Python::

    sweep = Sweep.of(spec, "rho", "resnet18-cifar10")      # or Sweep.parse(spec, "rho=0.001,0.002")
    evaluations = list(evaluate_sweep(spec, collection, store, sweep))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from sharpbench.collection.collection import Collection
from sharpbench.errors import SharpbenchError
from sharpbench.evaluation.report import Report
from sharpbench.evaluation.run import Evaluation, evaluate
from sharpbench.evaluation.store import ResultStore
from sharpbench.cards.measure_card import MeasureSpec


@dataclass(frozen=True)
class Sweep:
    """A parameter of a measure and the values it takes, in order, typed by the measure's card."""

    parameter: str
    values: tuple[Any, ...]

    @classmethod
    def of(cls, spec: MeasureSpec, parameter: str, values: str | Sequence[Any]) -> Sweep:
        """The values of `parameter`: a grid family of the card (by name), comma-separated text, or a sequence."""
        grids = spec.grids.get(parameter, {})
        if isinstance(values, str):
            if values.strip() in grids:
                return cls(parameter, tuple(grids[values.strip()]))
            items = [item.strip() for item in values.split(",")]
            if len(items) == 1 and grids and not _is_number(items[0]):
                raise SharpbenchError(f"sweep of {parameter}: measure '{spec.name}' has no grid '{values}' for "
                                      f"{parameter}; its grids are {sorted(grids)} (see {spec.path}), or give "
                                      f"values: {parameter}=V1,V2,...")
            values = items
        return cls(parameter, tuple(spec.bind({parameter: value})[parameter] for value in values))

    @classmethod
    def parse(cls, spec: MeasureSpec, text: str) -> Sweep:
        """'PARAM=V1,V2,...' or 'PARAM=GRID' (a grid family the card documents)."""
        name, sep, raw = text.partition("=")
        if not sep or not name.strip() or not raw.strip():
            raise SharpbenchError(f"sweep {text!r}: expected PARAM=V1,V2,... or PARAM=GRID, e.g. "
                                  f"rho=0.0005,0.001,0.002")
        return cls.of(spec, name.strip(), raw.strip())

    def document(self, reports: Sequence[Report]) -> dict[str, Any]:
        """The sweep's JSON document: the parameter and its values, and each value's report document in order."""
        return {"sweep": {"parameter": self.parameter, "values": list(self.values)},
                "reports": [report.document() for report in reports]}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def evaluate_sweep(spec: MeasureSpec, collection: Collection, store: ResultStore, sweep: Sweep, *,
                   overrides: dict[str, Any] | None = None, **options: Any) -> Iterator[Evaluation]:
    """One evaluation per value of the sweep, yielded as each finishes, with `overrides` for the other parameters;
    `options` are those of :func:`~sharpbench.evaluation.run.evaluate` (device, n, m, seed, progress, ...)."""
    for value in sweep.values:
        yield evaluate(spec, collection, store, overrides={**(overrides or {}), sweep.parameter: value}, **options)
