"""Targets from per-example outcomes and their resampling over examples: definitions, pairing, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from sharpbench.scoring.metrics import Bootstrap
from sharpbench.scoring.resampling import OutcomeSet, Target, resample_examples, standard_targets, target_values


def outcomes(rng: np.random.Generator, models: int, examples: int, p: float = 0.2) -> OutcomeSet:
    error = (rng.random((models, examples)) < p).astype(float)
    return OutcomeSet(error, error + rng.random((models, examples)))


def test_standard_targets_in_order_and_their_values():
    names = list(standard_targets(["noise", "blur"]))
    assert names == ["test_error", "gen_gap", "ood_error", "ood_error/noise", "ood_error/blur", "test_loss",
                     "ood_loss", "ood_loss/noise", "ood_loss/blur"]
    assert list(standard_targets([])) == ["test_error", "gen_gap", "test_loss"]
    rng = np.random.default_rng(0)
    sets = {"train": outcomes(rng, 3, 10), "test": outcomes(rng, 3, 8), "ood/noise": outcomes(rng, 3, 6),
            "ood/blur": outcomes(rng, 3, 4)}
    targets = standard_targets(["noise", "blur"])
    mean = {name: {kind: getattr(s, kind).mean(axis=1) for kind in ("error", "loss")} for name, s in sets.items()}
    assert target_values(targets["gen_gap"], sets) == pytest.approx(mean["test"]["error"] - mean["train"]["error"])
    assert target_values(targets["ood_loss"], sets) == pytest.approx(
        (mean["ood/noise"]["loss"] + mean["ood/blur"]["loss"]) / 2)
    with pytest.raises(ValueError, match="outcome must be one of"):
        Target((("test", "accuracy", 1.0),))
    with pytest.raises(ValueError, match=r"reads evaluation sets \['ood/fog'\]"):
        target_values(Target((("ood/fog", "error", 1.0),)), sets)


def test_examples_are_drawn_once_for_all_models_and_the_draws_depend_on_seed_name_and_size_only():
    rng = np.random.default_rng(1)
    base = outcomes(rng, 2, 400)
    error = base.error.copy()
    error[1] = error[0]
    error[1, 7], error[0, 7] = 1.0, 0.0  # model 1 errs where model 0 does not on example 7 only
    sets = {"test": OutcomeSet(error, base.loss)}
    bootstrap = Bootstrap(resamples=2000, seed=3)
    means = resample_examples(sets, {("test", "error")}, bootstrap)[("test", "error")]
    difference = (means.full[:, 1] - means.full[:, 0]) * 400  # the number of draws of example 7
    assert difference.min() >= 0 and difference.mean() == pytest.approx(1.0, abs=0.06)
    assert np.allclose(difference, np.round(difference))
    # another set, another needed outcome: the test set's draws do not change; another seed does
    more = dict(sets, train=outcomes(rng, 2, 50))
    again = resample_examples(more, {("test", "error"), ("test", "loss"), ("train", "error")}, bootstrap)
    assert np.array_equal(again[("test", "error")].full, means.full)
    other = resample_examples(sets, {("test", "error")}, Bootstrap(resamples=2000, seed=4))[("test", "error")]
    assert not np.array_equal(other.full, means.full)


def test_resampled_means_have_the_binomial_spread_and_the_halves_recombine():
    rng = np.random.default_rng(2)
    sets = {"test": outcomes(rng, 3, 1000, p=0.1)}
    observed = sets["test"].error.mean(axis=1)
    means = resample_examples(sets, {("test", "error")}, Bootstrap(resamples=3000))[("test", "error")]
    assert means.full.mean(axis=0) == pytest.approx(observed, abs=0.002)
    assert means.full.std(axis=0) == pytest.approx(np.sqrt(observed * (1 - observed) / 1000), rel=0.08)
    # each half holds half of the draws: twice the variance, and the halves add up to the full mean
    assert means.half_a.std(axis=0) == pytest.approx(means.full.std(axis=0) * np.sqrt(2), rel=0.08)
    assert means.half_b.std(axis=0) == pytest.approx(means.full.std(axis=0) * np.sqrt(2), rel=0.08)
    assert (means.half_a + means.half_b) / 2 == pytest.approx(means.full)
