"""The scoring layer: every registered metric under its report name, the noise replicates against a
resample-by-resample recomputation, orientation, collections without per-example outcomes, JSON-ability, numeric
hparams."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sharpbench.scoring.metrics import METRICS, granulated_kendall, kendall_tau
from sharpbench.scoring.noise import pair_noise, plausible_truth
from sharpbench.scoring.resampling import Bootstrap, example_rng
from sharpbench.scoring.scores import (OutcomeSet, Target, noise_ceiling, numeric_hparams, score_targets,
                                       standard_targets, target_values)

FAST = Bootstrap(resamples=60)


def collection(seed: int = 0, models: int = 12, examples: int = 200):
    """A 3 x 2 grid (lr x bs) with two seeds, train/test/one OOD set of 0/1 errors and losses."""
    rng = np.random.default_rng(seed)
    rows = [(lr, bs, s) for lr in (1, 2, 3) for bs in (16, 32) for s in (0, 1)][:models]
    hparams = {"lr": [r[0] for r in rows], "bs": [r[1] for r in rows], "seed": [r[2] for r in rows]}
    p = 0.05 + 0.05 * np.array(hparams["lr"]) + rng.uniform(0, 0.05, len(rows))

    def draw(scale: float, sample: str = "") -> OutcomeSet:
        error = (rng.random((len(rows), examples)) < scale * p[:, None]).astype(np.uint8)
        return OutcomeSet(error, error * 2 + rng.random(error.shape), sample)

    sets = {"train": draw(0.3), "test": draw(1.0), "ood/blur": draw(1.5, "test")}
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
    for key in METRICS:
        for suffix in ("_ci", "_ci_models"):
            low, high = entry[key + suffix]
            assert low <= entry[key] <= high, key + suffix      # the point is never outside its interval
    assert entry["examples_resampled"] is True and entry["n_examples"] == 200
    assert entry["notes"] == {} and entry["conditional_mi_pgdl_refused"] is None
    assert entry["conditional_mi_pgdl"] == entry["conditional_mi_pgdl_filled"]     # a complete grid
    # ten of the twelve models: lr 3 lacks both seeds of bs 32, an incomplete grid PGDL's program refuses
    incomplete = score_targets(*collection(models=10)[::-1][:1], targets, collection(models=10)[1],
                               collection(models=10)[0], bootstrap=FAST).targets["gen_gap"]
    assert incomplete["conditional_mi_pgdl"] is None and incomplete["conditional_mi_pgdl_ci"] == [None, None]
    assert incomplete["conditional_mi_pgdl_filled"] is not None
    assert incomplete["conditional_mi_pgdl_refused"].startswith("incomplete grid: 2 of the 12 combinations of "
                                                                "(lr, bs, seed) hold no model, e.g. (lr=3, bs=32, "
                                                                "seed=0)")
    assert "refused as PGDL's scoring program refuses it" in incomplete["notes"]["conditional_mi_pgdl"]
    assert 0 < entry["noise_ceiling"] <= 1
    if entry["kendall_tau_of_ceiling"] is not None:
        assert entry["kendall_tau_of_ceiling"] == pytest.approx(entry["kendall_tau"] / entry["noise_ceiling"])
    assert set(entry["robust_sign_error"]) == {"lr", "bs", "all"}
    assert entry["robust_sign_error"]["all"]["total"] == 3 * 2 + 3  # lr pairs x bs levels + one bs pair per lr
    assert scores.targets["test_loss"]["robust_sign_error"] is None and "Hoeffding" in \
        scores.targets["test_loss"]["notes"]["robust_sign_error"]
    assert scores.targets["gen_gap"]["n_examples"] == 200


def test_noise_replicates_are_tau_on_each_resample_around_the_plausible_truth():
    hparams, sets, values = collection(models=10, examples=50)
    target = Target((("test", "error", 1.0), ("train", "error", -1.0)))
    scores = score_targets(values, {"gen_gap": target}, sets, hparams, bootstrap=FAST, orientation=-1)
    observed = target_values(target, sets)
    truth = plausible_truth(observed, pair_noise(target, sets))
    draws = {name: example_rng(FAST, name).integers(0, 50, size=(60, 50)) for name in ("test", "train")}
    replicates = []
    for r in range(60):
        resampled = sets["test"].error[:, draws["test"][r]].mean(axis=1) - \
            sets["train"].error[:, draws["train"][r]].mean(axis=1)
        replicates.append(-kendall_tau(values, truth + resampled - observed))
    replicates = np.array(replicates)
    point = -kendall_tau(values, observed)
    # the ranked replicates are the point minus each replicate's deviation from their mean
    expected = point - (replicates - np.nanmean(replicates))
    assert scores.replicates["gen_gap"] == pytest.approx(expected, abs=1e-12, nan_ok=True)
    # the interval: their 2.5-97.5% quantiles, clipped to tau's range
    low, high = np.clip(np.nanquantile(expected, [0.025, 0.975]), -1, 1)
    assert scores.targets["gen_gap"]["oriented"]["kendall_tau_ci"] == pytest.approx([low, high], abs=1e-12)
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
    for key in METRICS:
        if not key.startswith("conditional_mi_pgdl"):
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
    assert entry["examples_resampled"] is False and "per-example outcomes" in entry["notes"]["intervals"]
    assert entry["kendall_tau_ci"] == [None, None] and entry["noise_ceiling"] is None
    assert entry["robust_sign_error"] is None and entry["kendall_tau_of_ceiling"] is None
    for key in ("kendall_tau", "kendall_tau_ci_models", "conditional_mi_pgdl_filled", "granulated_kendall_ci_models"):
        assert entry[key] == full.targets["test_error"][key], key
    # the replicates are then the model-only ones: the same as the model-only interval's
    low, high = np.nanquantile(scores.replicates["test_error"], FAST.tails)
    assert [min(low, entry["kendall_tau"]), max(high, entry["kendall_tau"])] == pytest.approx(
        entry["kendall_tau_ci_models"])
    with pytest.raises(ValueError, match=r"missing: \['gen_gap'\]"):
        score_targets(values, targets, None, hparams, aggregates={"test_error": aggregates["test_error"],
                                                                  "test_loss": aggregates["test_loss"]})


def test_noise_ceiling_is_the_score_entry_ceiling():
    hparams, sets, values = collection()
    target = standard_targets(["blur"])["ood_error"]
    estimate, interval = noise_ceiling(target, sets, bootstrap=FAST)
    entry = score_targets(values, {"ood_error": target}, sets, hparams, bootstrap=FAST).targets["ood_error"]
    assert entry["noise_ceiling"] == pytest.approx(estimate) and entry["noise_ceiling_ci"] == pytest.approx(interval)
    assert not math.isnan(estimate)


def test_numeric_hparams_keeps_numbers_and_orders_names_by_the_grid():
    records = [{"lr": 0.1, "augment": "strong"}, {"lr": 0.01, "augment": "none"}, {"lr": 1, "augment": "light"}]
    columns = numeric_hparams(records, {"augment": ["none", "light", "strong"]})
    assert columns == {"lr": [0.1, 0.01, 1.0], "augment": [2.0, 0.0, 1.0]}
