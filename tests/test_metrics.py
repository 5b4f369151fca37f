"""Ranking metrics against hand-computed cases and against independent, slow pairwise computations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

from sharpbench.scoring.metrics import (METRICS, Context, conditional_mutual_information, evaluate,
                                        granulated_kendall, kendall_tau, spearman, tau_vs_hparams)
from sharpbench.scoring import correlation
from sharpbench.scoring.pairs import coupled
from sharpbench.scoring.pgdl import conditional_mi_pgdl
from sharpbench.scoring.resampling import Bootstrap
from sharpbench.scoring.intervals import models_interval


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


def cmi_by_counting(values, target, hparams, multiplicity=None):
    """The PGDL score over ordered pairs of distinct models (each weighted by the product of multiplicities),
    three-valued signs, cells weighted by their pairs; the minimum over sets of one or two hyperparameters.
    Written with dictionaries and logs of probabilities, independently of the library's matrix form."""
    n = len(values)
    multiplicity = multiplicity or [1] * n
    names = [h for h in hparams if h != "seed" and len(set(hparams[h])) > 1]
    sets = [(h,) for h in names] + list(itertools.combinations(names, 2))
    sign = lambda d: (d > 0) - (d < 0)  # noqa: E731
    best = math.inf
    for condition in sets:
        cells: dict = {}
        for a in range(n):
            for b in range(n):
                if a == b or not multiplicity[a] * multiplicity[b]:
                    continue
                u = tuple(hparams[h][a] for h in condition) + tuple(hparams[h][b] for h in condition)
                key = (sign(values[a] - values[b]), sign(target[a] - target[b]))
                cells.setdefault(u, {}).setdefault(key, 0)
                cells[u][key] += multiplicity[a] * multiplicity[b]
        total = sum(sum(c.values()) for c in cells.values())
        information = entropy = 0.0
        for counts in cells.values():
            size = sum(counts.values())
            p_mu = {m: sum(c for (mm, _), c in counts.items() if mm == m) / size for m, _ in counts}
            p_g = {g: sum(c for (_, gg), c in counts.items() if gg == g) / size for _, g in counts}
            information += size / total * sum(c / size * math.log(c / size / (p_mu[m] * p_g[g]))
                                              for (m, g), c in counts.items())
            entropy -= size / total * sum(p * math.log(p) for p in p_g.values())
        if entropy > 0:
            best = min(best, information / entropy)
    return best if math.isfinite(best) else math.nan


# A 2 x 2 grid (lr in {1, 2}, bs in {1, 2}) plus one model with lr 3 whose bs=2 partner is missing.
GRID = {"lr": [1, 1, 2, 2, 3], "bs": [1, 2, 1, 2, 1]}


def test_kendall_and_spearman_hand_computed_with_ties():
    x, y = [1, 2, 2, 3], [1, 3, 2, 2]
    # pairs: (1,2)+ (1,3)+ (1,4)+ (2,3) tie x (2,4) - (3,4) tie y -> C=3, D=1, n0=6, ties 1 and 1
    assert kendall_tau(x, y) == pytest.approx(2 / 5)
    # ranks x = [1, 2.5, 2.5, 4], y = [1, 4, 2.5, 2.5]; centred: [-1.5, 0, 0, 1.5], [-1.5, 1.5, 0, 0];
    # dot 2.25, squared norms 4.5 and 4.5
    assert spearman(x, y) == pytest.approx(0.5)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3])) and math.isnan(spearman([1, 1, 1], [1, 2, 3]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=2, max_size=30))
def test_tau_b_agrees_with_pairwise_counting(pairs):
    x, y = [p[0] for p in pairs], [p[1] for p in pairs]
    expected, got = tau_b_by_counting(x, y), kendall_tau(x, y)
    assert (math.isnan(expected) and math.isnan(got)) or got == pytest.approx(expected, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=2, max_size=30), st.integers(0, 2 ** 16))
def test_the_compiled_rank_correlations_agree_with_pairwise_counting_and_scipy_on_drawn_samples(pairs, seed):
    # the kernels of sharpbench.scoring._rank_kernels against tau_b_by_counting and scipy on each drawn sample
    # (copies of a model tied on both sides), with x one row or one row per resample, the target one row or many
    x = np.array([p[0] for p in pairs], dtype=float)
    y = np.array([p[1] for p in pairs], dtype=float)
    rng = np.random.default_rng(seed)
    rows = np.vstack([y, rng.permutation(y), y[::-1]])
    draws = rng.integers(0, len(x), (3, len(x)))
    xs = np.vstack([x, rng.permutation(x), x + rng.integers(0, 2, len(x))])
    checks = [(correlation.kendall(x, rows), lambda r: tau_b_by_counting(x, rows[r])),
              (correlation.kendall(x, rows, draws), lambda r: tau_b_by_counting(x[draws[r]], rows[r][draws[r]])),
              (correlation.kendall(x, y, draws), lambda r: tau_b_by_counting(x[draws[r]], y[draws[r]])),
              (correlation.kendall(xs, rows), lambda r: tau_b_by_counting(xs[r], rows[r])),
              (correlation.spearman(x, rows), lambda r: spearman(x, rows[r])),
              (correlation.spearman(xs, rows, draws), lambda r: spearman(xs[r][draws[r]], rows[r][draws[r]]))]
    for got, expected in checks:
        for r in range(3):
            want = expected(r)
            assert (math.isnan(want) and math.isnan(got[r])) or got[r] == pytest.approx(want, abs=1e-12)


def test_the_compiled_rank_correlations_agree_with_scipy_at_a_thousand_models():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 300, 1_000).astype(float)        # ties on both sides
    rows = x + rng.integers(0, 200, (4, 1_000))
    draws = rng.integers(0, 1_000, (4, 1_000))
    taus, rhos = correlation.kendall(x, rows, draws), correlation.spearman(x, rows, draws)
    for r in range(4):
        assert taus[r] == pytest.approx(stats.kendalltau(x[draws[r]], rows[r][draws[r]]).statistic, abs=1e-12)
        assert rhos[r] == pytest.approx(stats.spearmanr(x[draws[r]], rows[r][draws[r]]).statistic, abs=1e-12)


def test_a_nan_among_the_drawn_models_makes_the_rank_correlations_nan_as_in_scipy():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    rows = np.array([[1.0, 3.0, 2.0, np.nan, 5.0], [2.0, 1.0, 4.0, 3.0, 5.0]])
    draws = np.array([[0, 1, 2, 4, 4], [0, 3, 3, 1, 2]])        # the first resample leaves the NaN model out
    for statistic, reference in ((correlation.kendall, stats.kendalltau), (correlation.spearman, stats.spearmanr)):
        assert np.isnan(statistic(x, rows)[0]) and np.isfinite(statistic(x, rows)[1])
        drawn = statistic(x, rows, draws)
        assert drawn[0] == pytest.approx(reference(x[draws[0]], rows[0][draws[0]]).statistic, abs=1e-12)
        assert drawn[1] == pytest.approx(reference(x[draws[1]], rows[1][draws[1]]).statistic, abs=1e-12)
        assert np.isnan(statistic(np.r_[np.nan, x[1:]], rows[1:], draws[1:])[0])   # model 0 drawn, NaN in x


def test_coupled_pairs_above_the_limit_are_a_uniform_sample_of_the_pairs_that_differ_in_one_hparam():
    lr, bs, seed = (column.ravel() for column in np.meshgrid(range(3), range(2), range(4), indexing="ij"))
    keep = (bs == 0) | (seed < 2)               # bs 0: 3 lr x 4 seeds; bs 1: 3 lr x 2 seeds (groups of unequal size)
    codes = {"lr": lr[keep], "bs": bs[keep]}
    n = int(keep.sum())
    every = coupled(codes, "lr", n, limit=10 ** 6)
    # bs 0: 12 models, 66 pairs - 3 x 6 sharing lr = 48; bs 1: 6 models, 15 - 3 = 12
    assert len(every[0]) == 60 and (codes["lr"][every[0]] != codes["lr"][every[1]]).all()
    assert (codes["bs"][every[0]] == codes["bs"][every[1]]).all()
    listed = set(zip(every[0].tolist(), every[1].tolist()))
    tally: dict = {}
    for draw in range(100):
        first, second, group = coupled(codes, "lr", n, limit=40, seed=draw)
        assert len(first) == 40
        assert len(set(zip(group.tolist(), codes["bs"][first].tolist()))) == len(set(group.tolist()))  # group: bs
        for pair in zip(first.tolist(), second.tolist()):
            assert pair in listed
            tally[pair] = tally.get(pair, 0) + 1
    # 4,000 draws over 60 pairs: uniform by a chi-square test (a bias toward a group or a value would fail it)
    observed = [tally.get(pair, 0) for pair in sorted(listed)]
    assert stats.chisquare(observed).pvalue > 0.001


def test_granulated_kendall_by_hand_on_an_incomplete_grid():
    values = [1.0, 2.0, 3.0, 5.0, 4.0]
    target = [1.0, 3.0, 2.0, 4.0, 0.0]
    # lr varies within bs=1: models 0, 2, 4 (values 1, 3, 4; target 1, 2, 0): pairs (0,2)+ (0,4)- (2,4)- -> -1/3;
    # within bs=2: models 1, 3 (values 2, 5; target 3, 4) -> +1. Psi_lr = (-1/3 + 1) / 2 = 1/3 from 2 groups.
    # bs varies within lr=1: models 0, 1 -> +1; lr=2: models 2, 3 -> +1; lr=3 has one model: no group.
    result = granulated_kendall(values, target, GRID)
    assert result.per_hparam == pytest.approx({"lr": 1 / 3, "bs": 1.0})
    assert result.groups == {"lr": 2, "bs": 2}
    assert result.mean == pytest.approx(2 / 3)


def test_granulated_kendall_skips_undefined_groups_and_the_seed():
    hparams = {"lr": [1, 2, 1, 2], "bs": [1, 1, 2, 2], "seed": [0, 0, 0, 0]}
    # within bs=2 the target is constant: tau undefined, that group is not counted
    result = granulated_kendall([1, 2, 3, 4], [1, 2, 5, 5], hparams)
    assert result.groups == {"lr": 1, "bs": 2} and result.per_hparam["lr"] == pytest.approx(1.0)
    assert set(result.per_hparam) == {"lr", "bs"}


def test_granulated_kendall_leaves_out_pairs_that_differ_only_in_the_seed():
    # lr in {1, 2}, two seeds each. Within a seed the measure orders lr correctly; across seeds of one lr the
    # measure and the target disagree. Only the four lr pairs (lr 1 vs lr 2) may count: all concordant -> 1.
    hparams = {"lr": [1, 1, 2, 2], "seed": [0, 1, 0, 1]}
    values, target = [1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.0]
    result = granulated_kendall(values, target, hparams)
    assert result.per_hparam == {"lr": pytest.approx(1.0)} and result.groups == {"lr": 1}
    # with the seed pairs (lr 1 seeds 0/1, lr 2 seeds 0/1: both discordant) tau-b would be (4 - 2) / 6 = 1/3
    assert kendall_tau(values, target) == pytest.approx(1 / 3)


def test_conditional_mi_by_hand():
    # one hyperparameter with two values, two models each: conditioning on it leaves cells (u_a, u_b)
    values, target, hparams = [1, 2, 3, 4], [1, 2, 4, 3], {"lr": [1, 1, 2, 2]}
    # ordered pairs within a cell: cell (1,1): (0,1),(1,0) both concordant; (2,2): (2,3),(3,2) both discordant;
    # cross cells (1,2): 4 pairs, all V_mu = V_g = -1 -> no information but no entropy either.
    # In cells (1,1) and (2,2) V_mu determines V_g: I = H = ln 2 each; each holds 2 of 12 pairs.
    # I(V_mu;V_g|U) = (4/12) ln 2; H(V_g|U) = (4/12) ln 2 -> 1.
    result = conditional_mutual_information(values, target, hparams)
    assert result.value == pytest.approx(1.0) and result.condition == ("lr",)
    # a target independent of the measure within each cell gives 0
    assert conditional_mutual_information([1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 2, 1, 1, 2, 2, 1],
                                          {"lr": [1, 1, 1, 1, 2, 2, 2, 2]}).value == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 2), st.integers(0, 1),
                          st.integers(0, 2)), min_size=3, max_size=12))
def test_conditional_mi_agrees_with_counting_and_ignores_negation(rows):
    values, target = [r[0] for r in rows], [r[1] for r in rows]
    hparams = {"lr": [r[2] for r in rows], "bs": [r[3] for r in rows], "width": [r[4] for r in rows]}
    expected = cmi_by_counting(values, target, hparams)
    got = conditional_mutual_information(values, target, hparams).value
    negated = conditional_mutual_information([-v for v in values], target, hparams).value
    for value in (got, negated):
        assert (math.isnan(expected) and math.isnan(value)) or value == pytest.approx(expected, abs=1e-9)


def test_tau_vs_hparams_ignores_seed_and_constant_hyperparameters():
    values = [1, 2, 3, 4]
    result = tau_vs_hparams(values, {"lr": [0.1, 0.2, 0.3, 0.4], "bs": [4, 3, 2, 1], "wd": [0, 0, 0, 0],
                                     "seed": [0, 1, 0, 1]})
    assert result == pytest.approx({"lr": 1.0, "bs": -1.0})


def replicates_of(values, target, hparams, bootstrap, orientation=1):
    """Every metric on each resample of models, the target held fixed."""
    return evaluate(Context.of(values, hparams, orientation), np.atleast_2d(np.asarray(target, dtype=float)),
                    bootstrap.indices(len(values)))


def test_replicates_equal_the_metrics_on_each_resample():
    rng = np.random.default_rng(3)
    lr, bs = np.meshgrid([1, 2, 3], [1, 2, 3, 4], indexing="ij")
    hparams = {"lr": lr.ravel().tolist(), "bs": bs.ravel().tolist()}
    values = rng.normal(size=12).round(1).tolist()
    target = (np.array(values) + rng.normal(size=12)).round(1).tolist()
    bootstrap = Bootstrap(resamples=25, seed=7)
    indices = bootstrap.indices(12)
    # one target per resample (as when test examples are resampled too): the metrics on (drawn values, that
    # resample's target of the drawn models), computed one resample at a time by the plain functions
    targets = np.array(target) + rng.normal(scale=0.5, size=(25, 12)).round(1)
    for resampled in (np.array(target), targets):
        replicates = evaluate(Context.of(values, hparams, -1), np.atleast_2d(resampled), indices)
        for r, rows in enumerate(indices):
            row_target = resampled if resampled.ndim == 1 else resampled[r]
            pick = lambda column: [column[i] for i in rows]  # noqa: E731
            v, t, h = pick(values), pick(row_target.tolist()), {name: pick(c) for name, c in hparams.items()}
            for key, expected in [("kendall_tau", kendall_tau(v, t)), ("spearman", spearman(v, t)),
                                  ("granulated_kendall", granulated_kendall(v, t, h).mean),
                                  ("granulated_kendall/lr", granulated_kendall(v, t, h).per_hparam["lr"]),
                                  ("conditional_mi_pgdl", conditional_mi_pgdl(v, t, h, orientation=-1).value),
                                  ("conditional_mi_pgdl_filled", conditional_mi_pgdl(v, t, h, orientation=-1).value)]:
                got = replicates[key][r]
                assert (math.isnan(expected) and math.isnan(got)) or got == pytest.approx(expected, abs=1e-12), key
            counts = np.bincount(rows, minlength=12).tolist()
            expected_cmi = cmi_by_counting(values, row_target.tolist(), hparams, counts)
            assert replicates["conditional_mi"][r] == pytest.approx(expected_cmi, abs=1e-9, nan_ok=True)
    assert set(replicates) == {"kendall_tau", "spearman", "granulated_kendall", "granulated_kendall/lr",
                               "granulated_kendall/bs", "conditional_mi", "conditional_mi_pgdl",
                               "conditional_mi_pgdl_filled"} and set(METRICS) < set(replicates)


def test_model_intervals_are_seeded_percentiles_that_drop_undefined_resamples():
    bootstrap = Bootstrap(resamples=400, seed=0)
    values = list(range(30))
    target = [v + (7 if v % 3 == 0 else 0) for v in values]
    first = replicates_of(values, target, {}, bootstrap)["kendall_tau"]
    second = replicates_of(values, target, {}, bootstrap)["kendall_tau"]
    assert np.array_equal(first, second, equal_nan=True)
    point = kendall_tau(values, target)
    low, high = models_interval(first, point, bootstrap=bootstrap)
    assert low <= point <= high and high - low > 0.01
    assert models_interval(np.array([np.nan, 1.0, 2.0, 3.0]), 2.0, bootstrap=bootstrap) == pytest.approx([1.05, 2.95])
    # the point is always inside: the interval widens to hold it
    assert models_interval(np.array([1.0, 2.0, 3.0]), 5.0, bootstrap=bootstrap)[1] == 5.0
    assert all(math.isnan(x) for x in models_interval(np.array([np.nan, np.nan]), 0.5, bootstrap=bootstrap))
    # two models: half the resamples draw one model twice (undefined); the others give +-1
    two = replicates_of([1, 2], [1, 2], {}, Bootstrap(resamples=200))["kendall_tau"]
    assert set(two[np.isfinite(two)]) == {1.0} and np.isnan(two).sum() > 50
