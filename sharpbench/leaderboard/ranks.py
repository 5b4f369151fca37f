"""Rank intervals: the ranks a measure takes among a collection's published measures across the resamples of the
evaluation sets' examples (the test-set noise: docs/scoring.md#intervals), so that two measures whose intervals
overlap are not presented as ordered.

Every result file of a collection keeps its oriented Kendall tau against test error on each resample
(``replicates.test_error``) and a fingerprint of the resamples (the model ids, the evaluation sets' sizes, the
seed and the count): measures with the same fingerprint were scored on the same resamples, so their taus can be
ranked resample by resample. Rank 1 is the largest oriented tau; ties share the best rank (competition ranking);
an undefined tau ranks last."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

RANKED_TARGET = "test_error"


@dataclass(frozen=True)
class RankInterval:
    """A measure's rank by its point estimate and the percentile interval of its ranks over the resamples."""

    rank: int
    low: int | None
    high: int | None

    def text(self) -> str:
        """'3 [1-5]', or '3' when no interval could be formed."""
        if self.low is None or self.high is None:
            return str(self.rank)
        return f"{self.rank} [{self.low}-{self.high}]"


def _competition_ranks(taus: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, 1 for the largest tau, ties sharing the best rank, NaN ranked last."""
    filled = np.where(np.isfinite(taus), taus, -np.inf)
    return stats.rankdata(-filled, method="min", axis=-1)


def rank_intervals(documents: list[dict[str, Any]], level: float = 0.95) -> dict[str, RankInterval]:
    """{variant: RankInterval} for the documents of one collection.

    The point rank orders the oriented taus of every document. The intervals come from the documents that share
    the most common resample fingerprint; a document scored on other resamples (or without replicates) takes part
    with its point estimate on every resample and gets no interval of its own."""
    point = np.array([_point(document) for document in documents], dtype=float)
    fingerprints = [document.get("scoring", {}).get("resample_fingerprint") for document in documents]
    known = [f for f in fingerprints if f is not None]
    common = max(set(known), key=known.count) if known else None
    shared = [f == common and bool(d.get("replicates", {}).get(RANKED_TARGET)) for d, f in zip(documents, fingerprints)]
    lengths = {len(d["replicates"][RANKED_TARGET]) for d, s in zip(documents, shared) if s}
    ranks = _competition_ranks(point)
    if sum(shared) < 2 or len(lengths) != 1:
        return {d["variant"]: RankInterval(int(r), None, None) for d, r in zip(documents, ranks)}
    resamples = lengths.pop()
    replicates = np.array([[np.nan if x is None else x for x in d["replicates"][RANKED_TARGET]] if s
                           else [p] * resamples for d, s, p in zip(documents, shared, point)], dtype=float)
    resampled = _competition_ranks(replicates.T)          # resamples x measures
    tail = (1 - level) / 2
    low = np.quantile(resampled, tail, axis=0, method="inverted_cdf")
    high = np.quantile(resampled, 1 - tail, axis=0, method="inverted_cdf")
    return {d["variant"]: RankInterval(int(r), int(lo) if s else None, int(hi) if s else None)
            for d, r, lo, hi, s in zip(documents, ranks, low, high, shared)}


def _point(document: dict[str, Any]) -> float:
    value = document["scores"].get(RANKED_TARGET, {}).get("oriented", {}).get("kendall_tau")
    return np.nan if value is None else float(value)
