"""The scoring layer: every metric under its report name, two-way replicates against a resample-by-resample
recomputation, orientation, collections without per-example outcomes, JSON-ability, numeric hparams."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sharpbench.scoring.metrics import Bootstrap, granulated_kendall, kendall_tau
from sharpbench.scoring.resampling import example_rng
from sharpbench.scoring.scores import (OutcomeSet, Target, noise_ceiling, numeric_hparams, score_targets, standard_targets,
                                target_values)

FAST = Bootstrap(resamples=60)


def collection(seed: int = 0, models: int = 12, examples: int = 200):
    """A 3 x 2 grid (lr x bs) with two seeds, train/test/one OOD set of 0/1 errors and losses."""
    rng = np.random.default_rng(seed)
    rows = [(lr, bs, s) for lr in (1, 2, 3) for bs in (16, 32) for s in (0, 1)][:models]
    hparams = {"lr": [r[0] for r in rows], "bs": [r[1] for r in rows], "seed": [r[2] for r in rows]}
    p = 0.05 + 0.05 * np.array(hparams["lr"]) + rng.uniform(0, 0.05, len(rows))

    def draw(scale: float) -> OutcomeSet:
        error = (rng.random((len(rows), examples)) < scale * p[:, None]).astype(float)
        return OutcomeSet(error, error * 2 + rng.random(error.shape))

    sets = {"train": draw(0.3), "test": draw(1.0), "ood/blur": draw(1.5)}
    return hparams, sets, p + rng.normal(0, 0.03, len(rows))


def test_every_target_gets_every_score_and_the_entries_are_json():
    hparams, sets, values = collection()
    targets = standard_targets(["blur"])
    scores = score_targets(values, targets, sets, hparams, bootstrap=FAST)
    assert list(scores.targets) == list(targets) == list(scores.replicates)
    json.dumps(scores.targets, allow_nan=False)
    entry = scores.targets["test_error"]
    observed = target_values(targets["test_error"], sets)
    assert entry["kendall_tau"] == pytest.approx(kendall_tau(values, observed))
    assert entry["granulated_kendall_per_hparam"] == pytest.approx(
        granulated_kendall(values, observed, hparams).per_hparam)
    for key in ("kendall_tau", "spearman", "granulated_kendall", "conditional_mi", "conditional_mi_pgdl"):
        for suffix in ("_ci", "_ci_models"):
            low, high = entry[key + suffix]
            assert low <= high, key + suffix
    assert entry["two_way"] is True and entry["notes"] == {} and entry["n_examples"] == 200
    assert 0 < entry["noise_ceiling"] <= 1
    assert entry["kendall_tau_of_ceiling"] == pytest.approx(entry["kendall_tau"] / entry["noise_ceiling"])
    assert set(entry["robust_sign_error"]) == {"lr", "bs", "all"}
    assert entry["robust_sign_error"]["all"]["total"] == 3 * 2 + 3  # lr pairs x bs levels + one bs pair per lr
    assert scores.targets["test_loss"]["robust_sign_error"] is None and "Hoeffding" in \
        scores.targets["test_loss"]["notes"]["robust_sign_error"]
    assert scores.targets["gen_gap"]["n_examples"] == 200


def test_two_way_replicates_are_the_metrics_on_each_resample_of_models_and_examples():
    hparams, sets, values = collection(models=10, examples=50)
    target = Target((("test", "error", 1.0), ("train", "error", -1.0)))
    scores = score_targets(values, {"gen_gap": target}, sets, hparams, bootstrap=FAST, orientation=-1)
    models = FAST.indices(10)
    draws = {name: example_rng(FAST, name).integers(0, 50, size=(60, 50)) for name in ("test", "train")}
    for r in range(60):
        resampled = sets["test"].error[:, draws["test"][r]].mean(axis=1) - \
            sets["train"].error[:, draws["train"][r]].mean(axis=1)
        expected = -kendall_tau(values[models[r]], resampled[models[r]])
        assert scores.replicates["gen_gap"][r] == pytest.approx(expected, abs=1e-12, nan_ok=True)
    # the same draws for another measure and for the same target under another name
    other = score_targets(values[::-1], {"again": target}, sets, hparams, bootstrap=FAST, orientation=-1)
    first = score_targets(values, {"again": target}, sets, hparams, bootstrap=FAST, orientation=-1)
    assert np.array_equal(first.replicates["again"], scores.replicates["gen_gap"], equal_nan=True)
    assert not np.array_equal(other.replicates["again"], first.replicates["again"], equal_nan=True)


def test_orientation_negates_the_oriented_scores_and_orients_the_sign_error_and_pgdl():
    hparams, sets, values = collection()
    targets = {"test_error": standard_targets([])["test_error"]}
    worse = score_targets(values, targets, sets, hparams, bootstrap=FAST, orientation=1).targets["test_error"]
    better = score_targets(values, targets, sets, hparams, bootstrap=FAST, orientation=-1).targets["test_error"]
    for key in ("kendall_tau", "spearman", "granulated_kendall", "conditional_mi"):
        assert better[key] == worse[key]
    assert better["oriented"]["kendall_tau"] == -worse["oriented"]["kendall_tau"] == -worse["kendall_tau"]
    low, high = worse["oriented"]["kendall_tau_ci"]
    assert better["oriented"]["kendall_tau_ci"] == pytest.approx([-high, -low])
    assert better["oriented"]["kendall_tau_ci_models"] == pytest.approx(
        [-x for x in worse["kendall_tau_ci_models"][::-1]])
    negated = score_targets(-values, targets, sets, hparams, bootstrap=FAST, orientation=1).targets["test_error"]
    assert better["conditional_mi_pgdl"] == pytest.approx(negated["conditional_mi_pgdl"])
    assert better["robust_sign_error"] == negated["robust_sign_error"]
    with pytest.raises(ValueError, match="orientation must be"):
        score_targets(values, targets, sets, hparams, orientation=0)


def test_without_per_example_outcomes_only_model_intervals_are_computed():
    hparams, sets, values = collection()
    targets = standard_targets([])
    aggregates = {name: target_values(target, sets).tolist() for name, target in targets.items()}
    scores = score_targets(values, targets, None, hparams, bootstrap=FAST, aggregates=aggregates)
    full = score_targets(values, targets, sets, hparams, bootstrap=FAST)
    entry = scores.targets["test_error"]
    json.dumps(scores.targets, allow_nan=False)
    assert entry["two_way"] is False and "per-example outcomes" in entry["notes"]["two_way"]
    assert entry["kendall_tau_ci"] == [None, None] and entry["noise_ceiling"] is None
    assert entry["robust_sign_error"] is None and entry["kendall_tau_of_ceiling"] is None
    for key in ("kendall_tau", "kendall_tau_ci_models", "conditional_mi_pgdl", "granulated_kendall_ci_models"):
        assert entry[key] == full.targets["test_error"][key], key
    # the replicates are then the model-only ones: the same as the model-only interval's
    low, high = FAST.interval(scores.replicates["test_error"])
    assert [low, high] == pytest.approx(entry["kendall_tau_ci_models"])
    with pytest.raises(ValueError, match=r"missing: \['gen_gap'\]"):
        score_targets(values, targets, None, hparams, aggregates={"test_error": aggregates["test_error"],
                                                                  "test_loss": aggregates["test_loss"]})


def test_noise_ceiling_is_the_score_entry_ceiling():
    hparams, sets, values = collection()
    target = standard_targets(["blur"])["ood_error"]
    estimate, interval = noise_ceiling(target, sets, hparams, bootstrap=FAST)
    entry = score_targets(values, {"ood_error": target}, sets, hparams, bootstrap=FAST).targets["ood_error"]
    assert entry["noise_ceiling"] == pytest.approx(estimate) and entry["noise_ceiling_ci"] == pytest.approx(interval)
    assert not math.isnan(estimate)


def test_numeric_hparams_keeps_numbers_and_orders_names_by_the_grid():
    records = [{"lr": 0.1, "augment": "strong"}, {"lr": 0.01, "augment": "none"}, {"lr": 1, "augment": "light"}]
    columns = numeric_hparams(records, {"augment": ["none", "light", "strong"]})
    assert columns == {"lr": [0.1, 0.01, 1.0], "augment": [2.0, 0.0, 1.0]}
