"""Targets from per-example outcomes and their resampling over examples: definitions, exactness, pairing, shared
examples, determinism; the pair noise against a direct computation and a simulation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from sharpbench.scoring.noise import mean_pair_square, pair_noise, plausible_truth, shrink_factor, truth_variance
from sharpbench.scoring.resampling import (Bootstrap, OutcomeSet, Target, resampled_sums, standard_targets,
                                           target_values)


def outcomes(rng: np.random.Generator, models: int, examples: int, p: float = 0.2, sample: str = "") -> OutcomeSet:
    error = (rng.random((models, examples)) < p).astype(np.uint8)
    return OutcomeSet(error, (error + rng.random((models, examples))).astype(np.float32), sample)


def test_standard_targets_in_order_and_their_values():
    names = list(standard_targets(["noise", "blur"]))
    assert names == ["test_error", "gen_gap", "ood_error", "ood_error/noise", "ood_error/blur", "test_loss",
                     "ood_loss", "ood_loss/noise", "ood_loss/blur"]
    assert list(standard_targets([])) == ["test_error", "gen_gap", "test_loss"]
    rng = np.random.default_rng(0)
    sets = {"train": outcomes(rng, 3, 10), "test": outcomes(rng, 3, 8), "ood/noise": outcomes(rng, 3, 6),
            "ood/blur": outcomes(rng, 3, 4)}
    targets = standard_targets(["noise", "blur"])
    mean = {name: {kind: getattr(s, kind).astype(float).mean(axis=1) for kind in ("error", "loss")}
            for name, s in sets.items()}
    assert target_values(targets["gen_gap"], sets) == pytest.approx(mean["test"]["error"] - mean["train"]["error"])
    assert target_values(targets["ood_loss"], sets) == pytest.approx(
        (mean["ood/noise"]["loss"] + mean["ood/blur"]["loss"]) / 2)
    with pytest.raises(ValueError, match="outcome must be one of"):
        Target((("test", "accuracy", 1.0),))
    with pytest.raises(ValueError, match=r"reads evaluation sets \['ood/fog'\]"):
        target_values(Target((("ood/fog", "error", 1.0),)), sets)


def test_targets_of_counts_are_exact_so_that_equal_rationals_tie():
    # a test set of 599 and a train set of 1198 (digits-mlp): gaps a/599 - b/1198 = (2a - b)/1198 are equal for
    # many (a, b); in float32 (and even float64 differences) they need not be
    pairs = [(a, b) for a in range(0, 9) for b in range(0, 7)]
    test = np.zeros((len(pairs), 599), dtype=np.uint8)
    train = np.zeros((len(pairs), 1198), dtype=np.uint8)
    for row, (a, b) in enumerate(pairs):
        test[row, :a], train[row, :b] = 1, 1
    sets = {"test": OutcomeSet(test, test.astype(np.float32)), "train": OutcomeSet(train, train.astype(np.float32))}
    gap = target_values(standard_targets([])["gen_gap"], sets)
    exact = {2 * a - b for a, b in pairs}
    assert len(set(gap.tolist())) == len(exact)
    float32 = test.astype(np.float32).mean(axis=1) - train.astype(np.float32).mean(axis=1)
    assert len(set(float32.tolist())) > len(exact)      # what the float32 means did (21 for 18 on digits-mlp)
    assert sorted(set(gap.tolist())) == pytest.approx(sorted(x / 1198 for x in exact), abs=0)
    # a third of a count per shift (the mean over three shifts) stays exact too
    thirds = Target(tuple((name, "error", 1 / 3) for name in ("test", "test", "test")))
    assert target_values(thirds, sets) == pytest.approx(test.mean(axis=1), abs=1e-15)


def test_examples_are_drawn_once_for_all_models_and_the_draws_depend_on_seed_sample_and_size_only():
    rng = np.random.default_rng(1)
    base = outcomes(rng, 2, 400)
    error = base.error.copy()
    error[1] = error[0]
    error[1, 7], error[0, 7] = 1, 0  # model 1 errs where model 0 does not on example 7 only
    sets = {"test": OutcomeSet(error, base.loss)}
    bootstrap = Bootstrap(resamples=2000, seed=3)
    sums = resampled_sums(sets, {("test", "error")}, bootstrap)[("test", "error")]
    assert sums.dtype == np.int32
    difference = sums[:, 1] - sums[:, 0]  # the number of draws of example 7
    assert difference.min() >= 0 and difference.mean() == pytest.approx(1.0, abs=0.06)
    # another set, another needed outcome: the test set's draws do not change; another seed does
    more = dict(sets, train=outcomes(rng, 2, 50))
    again = resampled_sums(more, {("test", "error"), ("test", "loss"), ("train", "error")}, bootstrap)
    assert np.array_equal(again[("test", "error")], sums)
    other = resampled_sums(sets, {("test", "error")}, Bootstrap(resamples=2000, seed=4))[("test", "error")]
    assert not np.array_equal(other, sums)


def test_sets_drawn_on_the_same_examples_are_resampled_with_the_same_indices():
    rng = np.random.default_rng(5)
    test = outcomes(rng, 3, 300)
    # an OOD set on the test images whose outcomes are the test set's: its resampled sums equal the test set's
    shifted = OutcomeSet(test.error.copy(), test.loss.copy(), "test")
    alone = OutcomeSet(test.error.copy(), test.loss.copy())
    bootstrap = Bootstrap(resamples=50)
    sums = resampled_sums({"test": test, "ood/a": shifted, "ood/b": alone},
                          {("test", "error"), ("ood/a", "error"), ("ood/b", "error")}, bootstrap)
    assert np.array_equal(sums[("test", "error")], sums[("ood/a", "error")])
    assert not np.array_equal(sums[("test", "error")], sums[("ood/b", "error")])
    with pytest.raises(ValueError, match="different sizes"):
        resampled_sums({"test": test, "ood/a": OutcomeSet(test.error[:, :10], test.loss[:, :10], "test")},
                       {("test", "error"), ("ood/a", "error")}, bootstrap)


def test_resampled_sums_have_the_binomial_spread():
    rng = np.random.default_rng(2)
    sets = {"test": outcomes(rng, 3, 1000, p=0.1)}
    observed = sets["test"].error.mean(axis=1)
    means = resampled_sums(sets, {("test", "error")}, Bootstrap(resamples=3000))[("test", "error")] / 1000
    assert means.mean(axis=0) == pytest.approx(observed, abs=0.002)
    assert means.std(axis=0) == pytest.approx(np.sqrt(observed * (1 - observed) / 1000), rel=0.08)


def test_pair_noise_is_the_mean_over_pairs_of_the_paired_variance_and_unbiased():
    rng = np.random.default_rng(7)
    sets = {"test": outcomes(rng, 5, 200, p=0.3), "ood/a": outcomes(rng, 5, 200, p=0.4, sample="test"),
            "ood/b": outcomes(rng, 5, 200, p=0.5, sample="test"), "train": outcomes(rng, 5, 90, p=0.1)}
    target = Target((("ood/a", "error", 0.5), ("ood/b", "error", 0.5), ("train", "error", -1.0)))
    # directly: per pair, the variance of the combined per-example difference over n - 1, over n, per sample
    combined = 0.5 * sets["ood/a"].error.astype(float) + 0.5 * sets["ood/b"].error.astype(float)
    train = sets["train"].error.astype(float)
    expected = np.mean([np.var(combined[a] - combined[b], ddof=1) / 200 + np.var(train[a] - train[b], ddof=1) / 90
                        for a, b in itertools.combinations(range(5), 2)])
    assert pair_noise(target, sets) == pytest.approx(expected, rel=1e-12)
    # unbiased: over fresh test sets of models with known error rates, its mean is the true variance of the
    # pairs' differences (independent examples: p_a (1 - p_a) / n + p_b (1 - p_b) / n)
    p = np.array([0.1, 0.2, 0.3, 0.4])
    found = [pair_noise(Target((("test", "error", 1.0),)),
                        {"test": OutcomeSet((rng.random((4, 50)) < p[:, None]).astype(np.uint8),
                                            np.zeros((4, 50)))}) for _ in range(4000)]
    truth = np.mean([(p[a] * (1 - p[a]) + p[b] * (1 - p[b])) / 50 for a, b in itertools.combinations(range(4), 2)])
    assert np.mean(found) == pytest.approx(truth, rel=0.02)


def test_the_truths_variance_is_its_posterior_mean_and_near_the_moments_with_many_models():
    # against a numerical integral of the posterior: (m - 1) s^2 / (V + n0) ~ chi-square(m - 1), prior 1 / (V + n0)
    for variance, noise, models in [(2.0, 1.0, 20), (1.0, 3.0, 60), (5.0, 0.5, 8)]:
        grid = np.linspace(0, 60 * variance, 400_001)
        total = grid + noise / 2
        likelihood = stats.chi2.pdf((models - 1) * variance / total, models - 1) * (models - 1) / total
        density = likelihood / total
        assert truth_variance(variance, noise, models) == pytest.approx(
            (grid * density).sum() / density.sum(), rel=2e-3)
    # many models: the method of moments; a spread within the noise: small, yet never 0
    assert truth_variance(2.0, 1.0, 100_000) == pytest.approx(1.5, rel=1e-3)
    assert 0 < truth_variance(1.0, 3.0, 60) < 0.5


def test_the_plausible_truth_keeps_the_order_and_the_mean():
    observed = np.random.default_rng(0).uniform(0.01, 0.08, 60)
    noise = 0.3 * mean_pair_square(observed)
    truth = plausible_truth(observed, noise)
    assert np.argsort(truth).tolist() == np.argsort(observed).tolist()
    assert truth.mean() == pytest.approx(observed.mean())
    k = shrink_factor(observed, noise)
    assert mean_pair_square(truth) == pytest.approx(k ** 2 * mean_pair_square(observed))
    assert k ** 2 == pytest.approx(truth_variance(mean_pair_square(observed) / 2, noise, 60)
                                   / (mean_pair_square(observed) / 2)) and 0.6 < k ** 2 < 0.8
    assert shrink_factor(observed, 0.0) == 1.0
    # a spread within the noise: the truth's variance is a small part of a model's noise, yet not 0
    within = 10 * mean_pair_square(observed)
    assert 0 < truth_variance(mean_pair_square(observed) / 2, within, 60) < within / 2 / 20

