"""The scoring layer: every metric under its report name, orientation of the sign error, numeric hparams."""

from __future__ import annotations

import pytest

from sharpbench.metrics import Bootstrap, kendall_tau
from sharpbench.scoring import numeric_hparams, score_target, score_targets

HPARAMS = {"lr": [1, 1, 2, 2, 3, 3], "bs": [1, 2, 1, 2, 1, 2]}
VALUES = [0.1, 0.4, 0.2, 0.6, 0.5, 0.3]
TARGET = [1.0, 3.0, 2.0, 5.0, 6.0, 4.0]
FAST = Bootstrap(resamples=50)


def test_score_target_reports_every_metric_with_intervals_around_it():
    score = score_target(VALUES, TARGET, HPARAMS, bootstrap=FAST)
    assert score["kendall_tau"] == pytest.approx(kendall_tau(VALUES, TARGET))
    for key in ("kendall_tau", "spearman", "granulated_kendall", "conditional_mi", "sign_error_mean"):
        low, high = score[f"{key}_ci"]
        assert low <= high, key
    assert set(score["granulated_kendall_per_hparam"]) == set(score["granulated_kendall_per_hparam_ci"]) == {"lr", "bs"}
    assert score["granulated_kendall_groups"] == {"lr": 2, "bs": 3}
    assert set(score["conditional_mi_condition"]) <= {"lr", "bs"} and score["sign_error_environments"] == 9  # 3 lr pairs x 2 bs + 3 lr


def test_expected_sign_orients_the_sign_error_and_nothing_else():
    worse = score_target(VALUES, TARGET, HPARAMS, bootstrap=FAST, expected_sign=1)
    better = score_target(VALUES, TARGET, HPARAMS, bootstrap=FAST, expected_sign=-1)
    # every environment's error e becomes 1 - e (no ties here), so the mean flips around 1/2
    assert better["sign_error_mean"] == pytest.approx(1 - worse["sign_error_mean"])
    for key in ("kendall_tau", "spearman", "granulated_kendall", "conditional_mi"):
        assert better[key] == worse[key]


def test_score_targets_keeps_every_target_in_order():
    scores = score_targets([1, 2, 3], {"test_error": [1, 2, 3], "gen_gap": [3, 2, 1]}, {}, bootstrap=FAST)
    assert list(scores) == ["test_error", "gen_gap"]
    assert scores["test_error"]["kendall_tau"] == pytest.approx(1.0)
    assert scores["gen_gap"]["kendall_tau"] == pytest.approx(-1.0)


def test_numeric_hparams_keeps_numbers_and_orders_names_by_the_grid():
    records = [{"lr": 0.1, "augment": "strong"}, {"lr": 0.01, "augment": "none"}, {"lr": 1, "augment": "light"}]
    columns = numeric_hparams(records, {"augment": ["none", "light", "strong"]})
    assert columns == {"lr": [0.1, 0.01, 1.0], "augment": [2.0, 0.0, 1.0]}
