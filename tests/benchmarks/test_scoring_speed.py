"""Scoring against what cannot be skipped: one target's whole scoring (every metric, both intervals, the ceiling,
the sign error) against the 1,000 resampled targets and one Kendall tau per resample, on synthetic populations
(tests/benchmarks/populations.py: 10,000 test examples, two OOD sets on the test images, a 1,000-example train
subset). At full size (--benchmark-only) 60 and 1,000 models; otherwise 60 models on 2,000 examples, once, as a test
that the path works. Larger populations (10,000 and 50,000 models, peak memory) are timed by
tests/benchmarks/scoring_scale.py, one process per size."""

from __future__ import annotations

import numpy as np
import pytest

from populations import population
from sharpbench.scoring import correlation
from sharpbench.scoring.resampling import Bootstrap, example_counts, resampled_sums, standard_targets
from sharpbench.scoring.scores import score_targets


@pytest.mark.parametrize("models", [60, 1_000])
@pytest.mark.parametrize("label", ["scoring", "floor"])
def test_one_target(benchmark, setup, record, models, label):
    if not setup.full and models != 60:
        pytest.skip("60 models stand for every size outside --benchmark-only")
    found = population(models, test=10_000 if setup.full else 2_000)
    target = {"test_error": standard_targets(found.shifts)["test_error"]}
    bootstrap = Bootstrap()

    def scoring():
        example_counts.cache_clear()     # every round draws its resamples, as a first scoring does
        return score_targets(found.values, target, found.sets, found.hparams, bootstrap=bootstrap)

    def floor():
        # the resampled targets and one Kendall tau per resample: what any two-interval scoring must do at least
        example_counts.cache_clear()
        sums = resampled_sums(found.sets, target["test_error"].needed, bootstrap)
        return correlation.kendall(found.values, target["test_error"].combine(sums, found.sets))

    result = benchmark.pedantic(scoring if label == "scoring" else floor, rounds=3 if models == 60 else 1)
    if label == "scoring":
        entry = result.targets["test_error"]
        assert entry["kendall_tau_ci"][0] <= entry["kendall_tau"] <= entry["kendall_tau_ci"][1]
    else:
        assert np.isfinite(result).all()
    record("scoring", f"{models} models, one target", label)
