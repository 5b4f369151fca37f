"""Radius sweeps on the leaderboard: the results of a sharpness measure at other radii, and with normalized logits,
gathered into curves of Kendall tau against rho (the study's figures), apart from the main tables.

A result is a point of a sweep when its measure's default result is published on the same collection and its
parameters differ from the default's only in `rho` and `normalize_logits`; the default result is the sweep's
point at the default radius. Any other non-default result stays a row of the main table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SWEPT = ("rho", "normalize_logits")


@dataclass(frozen=True)
class SweepPoint:
    """One radius of one curve: the result there."""

    rho: float
    document: dict[str, Any]

    def tau(self, target: str) -> tuple[float | None, list[float | None] | None]:
        """The oriented Kendall tau against `target` and its interval."""
        oriented = self.document["scores"].get(target, {}).get("oriented", {})
        return oriented.get("kendall_tau"), oriented.get("kendall_tau_ci")


@dataclass(frozen=True)
class Curve:
    """A measure's points over rho, with or without normalized logits, in increasing rho."""

    measure: str
    normalized: bool
    points: list[SweepPoint]

    def label(self) -> str:
        return self.measure + (" (normalized logits)" if self.normalized else "")


def _defaults(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["measure"]: d for d in documents if d["variant"] == d["measure"]}


def is_sweep_point(document: dict[str, Any], defaults: dict[str, dict[str, Any]]) -> bool:
    """A non-default result whose parameters differ from its measure's default result only in rho and
    normalize_logits (and whose protocol is the default's)."""
    default = defaults.get(document["measure"])
    if default is None or document is default or "rho" not in document["params"]:
        return False
    same = all(document["params"].get(k) == v for k, v in default["params"].items() if k not in SWEPT)
    return same and document["provenance"]["protocol"] == default["provenance"]["protocol"]


def split(documents: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the main table's results, the sweeps' points that are not defaults), for one collection's results."""
    defaults = _defaults(documents)
    points = [d for d in documents if is_sweep_point(d, defaults)]
    return [d for d in documents if not any(d is p for p in points)], points


def curves(documents: list[dict[str, Any]]) -> list[Curve]:
    """Every curve of one collection's results that has at least two radii, by measure then plain before
    normalized."""
    defaults = _defaults(documents)
    _, points = split(documents)
    out = []
    for measure in sorted({d["measure"] for d in points}):
        members = [defaults[measure]] + [d for d in points if d["measure"] == measure]
        for normalized in (False, True):
            chosen = sorted((SweepPoint(float(d["params"]["rho"]), d) for d in members
                             if bool(d["params"].get("normalize_logits")) == normalized), key=lambda p: p.rho)
            if len(chosen) >= 2:
                out.append(Curve(measure, normalized, chosen))
    return out
