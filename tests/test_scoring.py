"""Kendall tau-b against an independent pairwise count, with ties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

from sharpbench.scoring import kendall_tau_b, score_targets


def tau_b_by_counting(x, y):
    """(concordant - discordant) / sqrt((n0 - ties_x)(n0 - ties_y)), counted over all pairs."""
    concordant = discordant = ties_x = ties_y = pairs = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            pairs += 1
            dx, dy = x[i] - x[j], y[i] - y[j]
            ties_x += dx == 0
            ties_y += dy == 0
            if dx * dy > 0:
                concordant += 1
            elif dx * dy < 0:
                discordant += 1
    denominator = math.sqrt((pairs - ties_x) * (pairs - ties_y))
    return (concordant - discordant) / denominator if denominator else math.nan


def test_a_hand_computed_case_with_ties():
    x = [1, 2, 2, 3]
    y = [1, 3, 2, 2]
    # pairs: (1,2)+ (1,3)+ (1,4)+ (2,3) tie x (2,4) - (3,4) tie y -> C=3, D=1, n0=6, ties 1 and 1
    assert kendall_tau_b(x, y) == pytest.approx(2 / 5)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=2, max_size=30))
def test_tau_b_agrees_with_pairwise_counting(pairs):
    x, y = [p[0] for p in pairs], [p[1] for p in pairs]
    expected = tau_b_by_counting(x, y)
    got = kendall_tau_b(x, y)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, abs=1e-12)


def test_monotone_transforms_do_not_change_the_score_and_negation_flips_it():
    values = [0.3, 0.1, 0.9, 0.5, 0.7]
    target = [2.0, 1.0, 5.0, 4.0, 3.0]
    tau = kendall_tau_b(values, target)
    assert kendall_tau_b([math.exp(v) for v in values], target) == pytest.approx(tau)
    assert kendall_tau_b([-v for v in values], target) == pytest.approx(-tau)


def test_score_targets_keeps_every_target():
    scores = score_targets([1, 2, 3], {"test_error": [1, 2, 3], "gen_gap": [3, 2, 1]})
    assert scores == {"test_error": {"kendall_tau": pytest.approx(1.0)}, "gen_gap": {"kendall_tau": pytest.approx(-1.0)}}
