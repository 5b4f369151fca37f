"""Across collections: each measure's oriented tau against test error and OOD error on every collection, as a
fraction of the collection's noise ceiling, and its mean rank; and per collection, the measure that tracks each
hyperparameter best. Only the measures' default results take part (the sweeps have their own curves)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sharpbench.leaderboard.blocks import Block, Heading, Paragraph, Table
from sharpbench.leaderboard.tables import noise_ceilings, number, reads_more


def oriented_tau(document: dict[str, Any], target: str) -> float | None:
    """The result's oriented Kendall tau against `target` (None when undefined or absent)."""
    return document["scores"].get(target, {}).get("oriented", {}).get("kendall_tau")


@dataclass(frozen=True)
class SummaryRow:
    """One measure over the collections: its default result on each (None where not published) and its mean
    rank over the collections it has a rank on."""

    measure: str
    results: dict[str, dict[str, Any] | None]
    mean_rank: float | None
    apart: bool

    def cell(self, collection: str) -> str:
        """'+0.41 (0.69) / +0.51': oriented tau vs test error, its fraction of the ceiling, and vs OOD error."""
        document = self.results.get(collection)
        if document is None:
            return "—"
        fraction = document["scores"].get("test_error", {}).get("kendall_tau_of_ceiling")
        ood = oriented_tau(document, "ood_error")
        return (f"{number(oriented_tau(document, 'test_error'), 2)} ({number(fraction, 2, signed=False)}) / "
                f"{number(ood, 2)}")


def summary_rows(groups: dict[str, list[dict[str, Any]]]) -> list[SummaryRow]:
    """Every measure with a default result somewhere, by mean rank (ranked-apart measures last), then name;
    `groups` is `by_collection`'s (ranked) main results."""
    measures = sorted({d["measure"] for docs in groups.values() for d in docs if d["variant"] == d["measure"]})
    rows = []
    for measure in measures:
        results = {c: next((d for d in docs if d["variant"] == measure), None) for c, docs in groups.items()}
        ranks = [d["rank"].rank for d in results.values() if d is not None and d.get("rank") is not None]
        apart = any(reads_more(d) for d in results.values() if d is not None)
        rows.append(SummaryRow(measure, results, sum(ranks) / len(ranks) if ranks else None, apart))
    return sorted(rows, key=lambda r: (r.apart, r.mean_rank is None, r.mean_rank or 0.0, r.measure))


def ceiling_cell(groups: dict[str, list[dict[str, Any]]], collection: str) -> str:
    """The collection's noise ceilings against test error and OOD error, as the summary's heading row shows them."""
    ceilings = noise_ceilings(groups[collection][0])
    return f"{number(ceilings.get('test_error', (None,))[0], 2)} / {number(ceilings.get('ood_error', (None,))[0], 2)}"


def best_trackers(documents: list[dict[str, Any]]) -> dict[str, tuple[str, float]]:
    """{hyperparameter: (the measure whose Kendall tau with it is largest in absolute value, that tau)} over one
    collection's default results."""
    best: dict[str, tuple[str, float]] = {}
    for document in documents:
        if document["variant"] != document["measure"]:
            continue
        for name, tau in document["tau_vs_hparams"].items():
            if tau is not None and (name not in best or abs(tau) > abs(best[name][1])):
                best[name] = (document["measure"], tau)
    return dict(sorted(best.items()))


def summary_blocks(groups: dict[str, list[dict[str, Any]]]) -> list[Block]:
    """The cross-collection table and the per-collection trackers."""
    collections = list(groups)
    rows = [["noise ceiling: test / OOD", ""] + [ceiling_cell(groups, c) for c in collections]]
    rows += [[row.measure, "n/a" if row.mean_rank is None else f"{row.mean_rank:.1f}"]
             + [row.cell(c) for c in collections] for row in summary_rows(groups)]
    trackers = [[collection, name, measure, number(tau)] for collection, documents in groups.items()
                for name, (measure, tau) in best_trackers(documents).items()]
    return [
        Heading(2, "Across collections", "across-collections"),
        Paragraph("Each cell: oriented Kendall τ against test error (its fraction of the collection's noise ceiling) / "
                  "against OOD error, for the measure's default result; '—' where it is not published (or does not "
                  "apply). Mean rank: over the collections where it is ranked (among the measures that read what it "
                  "reads). Measures that read test inputs or other models are listed last."),
        Table(["measure", "mean rank", *collections], rows, tuple(range(1, len(collections) + 2))),
        Heading(3, "What tracks each hyperparameter", "trackers"),
        Paragraph("Per collection, the measure whose Kendall τ with each varied hyperparameter is largest in absolute "
                  "value (default results)."),
        Table(["collection", "hyperparameter", "tracked best by", "τ"], trackers, (3,)),
    ]
