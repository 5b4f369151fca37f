"""Rank intervals of the leaderboard: ranks over shared resamples, not over point estimates."""

from __future__ import annotations

import numpy as np

from sharpbench.leaderboard.ranks import rank_intervals


def _document(variant: str, point: float | None, replicates: list[float | None], fingerprint: str = "f" * 64) -> dict:
    return {"variant": variant, "scores": {"test_error": {"oriented": {"kendall_tau": point}}},
            "scoring": {"resample_fingerprint": fingerprint}, "replicates": {"test_error": replicates}}


def test_separated_measures_get_single_ranks_and_overlapping_ones_share_an_interval():
    rng = np.random.default_rng(0)
    common = rng.normal(size=1000)
    documents = [
        _document("best", 0.6, list(0.6 + 0.01 * common)),
        # two measures whose resampled taus cross often: neither is ordered above the other
        _document("close-a", 0.31, list(0.31 + 0.05 * rng.normal(size=1000))),
        _document("close-b", 0.30, list(0.30 + 0.05 * rng.normal(size=1000))),
        _document("worst", -0.2, list(-0.2 + 0.01 * common)),
    ]
    ranks = rank_intervals(documents)
    assert (ranks["best"].rank, ranks["best"].low, ranks["best"].high) == (1, 1, 1)
    assert (ranks["worst"].rank, ranks["worst"].low, ranks["worst"].high) == (4, 4, 4)
    assert (ranks["close-a"].rank, ranks["close-b"].rank) == (2, 3)
    assert (ranks["close-a"].low, ranks["close-a"].high) == (2, 3) == (ranks["close-b"].low, ranks["close-b"].high)
    assert ranks["close-a"].text() == "2 [2-3]"


def test_undefined_taus_rank_last_and_ties_share_the_best_rank():
    documents = [_document("a", 0.2, [0.2, 0.2, None]), _document("b", 0.2, [0.2, 0.1, 0.3]),
                 _document("c", None, [None, None, None])]
    ranks = rank_intervals(documents, level=1.0)  # the interval spans every resample's rank
    assert ranks["a"].rank == ranks["b"].rank == 1 and ranks["c"].rank == 3
    # on resample 3, a's tau is undefined: it ranks below b there and ties with c, also undefined (rank 2 of 3)
    assert (ranks["a"].low, ranks["a"].high) == (1, 2) and (ranks["c"].low, ranks["c"].high) == (2, 3)


def test_results_on_other_resamples_get_no_interval():
    documents = [_document("a", 0.5, [0.5] * 10), _document("b", 0.1, [0.1] * 10),
                 _document("old", 0.3, [0.3] * 10, fingerprint="0" * 64)]
    ranks = rank_intervals(documents)
    assert ranks["old"].rank == 2 and ranks["old"].low is None and ranks["old"].text() == "2"
    # the old result takes part with its point estimate: b stays third on every resample
    assert (ranks["a"].low, ranks["a"].high, ranks["b"].low, ranks["b"].high) == (1, 1, 3, 3)


def test_a_measure_that_reads_test_inputs_or_other_models_is_ranked_apart_after_the_others():
    """by_collection ranks the measures of the weights and training data among themselves, then those that read
    more (here the best tau of all) among themselves, listed after, their rank marked."""
    from sharpbench.leaderboard.tables import APART_MARK, by_collection, COLUMNS

    def published(variant: str, tau: float, uses: list[str] | None) -> dict:
        document = {**_document(variant, tau, [tau] * 10), "collection": "c", "measure": variant,
                    "higher_means": "worse"}
        return document if uses is None else {**document, "uses": uses}

    group = by_collection([published("sharp", 0.3, None), published("norm", 0.1, []),
                           published("disagreement", 0.9, ["test_inputs", "other_models"]),
                           published("peek", 0.5, ["training_data", "test_inputs"])])["c"]
    assert [d["variant"] for d in group] == ["sharp", "norm", "disagreement", "peek"]
    assert [d["rank"].rank for d in group] == [1, 2, 1, 2]
    text = {column.key: column for column in COLUMNS}
    assert [text["rank"].text(d) for d in group] == ["1 [1-1]", "2 [2-2]", f"1 [1-1] {APART_MARK}",
                                                    f"2 [2-2] {APART_MARK}"]
    assert [text["reads"].text(d) for d in group] == [
        "weights, training data", "weights only", "weights, test inputs (unlabeled), other models",
        "weights, training data, test inputs (unlabeled)"]
