"""The noise ceiling: its correction formula by hand, and its estimate against simulated collections whose true
ceiling (the expectation over test sets of tau(true errors, observed errors)) is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sharpbench.scoring.ceiling import corrected_tau, noise_ceiling, split_half_estimate
from sharpbench.scoring.metrics import Bootstrap, kendall_tau
from sharpbench.scoring.resampling import OutcomeSet, Target, standard_targets
from simulated import SimulatedCollection

TEST_ERROR = Target((("test", "error", 1.0),))


def test_the_correction_by_hand():
    # tau_half 1/3: r = sin(pi/6) = 1/2, Spearman-Brown 2 (1/2) / (3/2) = 2/3, tau = (2/pi) arcsin(sqrt(2/3))
    assert corrected_tau(1 / 3) == pytest.approx(2 / math.pi * math.asin(math.sqrt(2 / 3)))
    assert corrected_tau(1.0) == pytest.approx(1.0) and corrected_tau(0.0) == 0.0 and corrected_tau(-0.2) == 0.0
    # digits-mlp (REFERENCE.md): split-half 0.30; Spearman-Brown gives rho = 0.624, the tau between two full test
    # sets (2/pi) arcsin(rho) = 0.43 (the figure quoted there), and the ceiling against the true errors 0.58
    r = math.sin(math.pi * 0.30 / 2)
    assert 2 / math.pi * math.asin(2 * r / (1 + r)) == pytest.approx(0.43, abs=0.005)
    assert corrected_tau(0.30) == pytest.approx(0.580, abs=0.001)


@pytest.mark.parametrize("examples, correlated, spread", [(300, False, None), (1000, False, None),
                                                           pytest.param(10000, False, None, marks=pytest.mark.slow),
                                                           (1000, True, None),
                                                           (600, False, (0.013, 0.04))])
def test_split_half_ceiling_is_within_0_05_of_the_true_ceiling(examples, correlated, spread):
    """Measured (60 models, 20 test sets each, 100 splits; truth from 200 test sets): mean absolute error 0.008
    (300 examples), 0.004 (1,000), 0.002 (10,000), 0.003 (1,000, examples of varying difficulty), and on a
    digits-mlp-like collection (true errors 1.3-4%, 600 examples, ceiling about 0.4) see the assertion."""
    rng = np.random.default_rng(examples)
    collection = SimulatedCollection.make(rng, 60, correlated)
    if spread is not None:
        collection = SimulatedCollection(rng.uniform(*spread, 60), None)
    truth = np.mean([kendall_tau(collection.true_error, collection.draw(rng, examples).mean(axis=1))
                     for _ in range(200)])
    estimates = np.array([split_half_estimate(TEST_ERROR, {"test": OutcomeSet(e, e)}, splits=100)
                          for e in (collection.draw(rng, examples) for _ in range(20))])
    assert np.abs(estimates - truth).mean() <= 0.05


def test_every_standard_target_has_a_ceiling_inside_its_interval():
    rng = np.random.default_rng(0)
    collection = SimulatedCollection.make(rng, 30, correlated=True)
    sets = {name: OutcomeSet(e, e * 3.0) for name, e in
            [("train", SimulatedCollection.make(rng, 30, correlated=False).draw(rng, 500)),
             ("test", collection.draw(rng, 400)),
             ("ood/a", collection.draw(rng, 300)), ("ood/b", collection.draw(rng, 300))]}
    for name, target in standard_targets(["a", "b"]).items():
        estimate, (low, high) = noise_ceiling(target, sets, bootstrap=Bootstrap(resamples=100))
        assert 0 < estimate <= 1 and 0 <= low <= high <= 1, name
    with pytest.raises(ValueError, match="hyperparameter 'lr' has 2 values for 30 models"):
        noise_ceiling(standard_targets([])["test_error"], sets, {"lr": [1, 2]})
