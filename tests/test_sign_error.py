"""Robust sign error against an independent transcription of Dziugaite et al.'s released code
(experiments/coupled_networks: create_environments.py accumulates Hoeffding weights over ordered pairs of runs
per ordered pair of configurations; figure_cdf_all_measures.py keeps environments by effective sample size and
lists each one per direction), and by hand."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest

from sharpbench.scoring.sign_error import hoeffding_weight, robust_sign_error


def released_code(values, gaps, hparams, n, min_ess=12.0):
    """Their two scripts, with plain loops and dictionaries: {family: list of environment losses}."""
    names = [h for h in hparams if h != "seed"]
    runs = [(tuple(hparams[h][i] for h in names), values[i], gaps[i]) for i in range(len(values))]
    combos = sorted({r[0] for r in runs})
    combo_id = {c: i for i, c in enumerate(combos)}
    losses, weights, squares = defaultdict(float), defaultdict(float), defaultdict(float)
    for h1, c1, g1 in runs:
        for h2, c2, g2 in runs:
            if sum(a != b for a, b in zip(h1, h2)) != 1:
                continue
            psi = max(0.0, 1.0 - 2 * np.exp(-2 * n * (abs(g1 - g2) / 2) ** 2)) ** 2
            weight = psi - 0.5 if psi > 0.5 else 0
            key = (combo_id[h1], combo_id[h2])
            weights[key] += weight
            squares[key] += weight ** 2
            losses[key] += (1 - float(np.sign(c1 - c2) * np.sign(g1 - g2))) / 2 * weight
    out = {}
    for index, name in enumerate(names):
        found = []
        levels = sorted({c[index] for c in combos})
        for v1 in levels:
            for v2 in levels:
                if v1 == v2:
                    continue
                for c1 in combos:
                    if c1[index] != v1:
                        continue
                    c2 = c1[:index] + (v2,) + c1[index + 1:]
                    if c2 not in combo_id:
                        continue
                    key = (combo_id[c1], combo_id[c2])
                    total, square = weights[key], squares[key]
                    if np.isclose(total, 0):
                        square = 1
                    ess = total ** 2 / square
                    if np.isclose(ess, min_ess) or ess > min_ess:
                        found.append(losses[key] / total)
        out[name] = found
    out["all"] = [loss for name in names for loss in out[name]]
    return out


def summary(found):
    if not found:
        return None, None, None
    return np.mean(found), np.percentile(found, 90), np.max(found)


def test_agrees_with_the_released_code_on_a_collection_with_seeds():
    rng = np.random.default_rng(0)
    rows = [(lr, width, seed) for lr in (1, 2, 3) for width in (8, 16) for seed in range(5)][:-3]  # incomplete
    hparams = {"lr": [r[0] for r in rows], "width": [r[1] for r in rows], "seed": [r[2] for r in rows]}
    gaps = np.array([0.02 * r[0] + 0.03 * (r[1] == 16) for r in rows]) + rng.normal(0, 0.01, len(rows))
    values = gaps + rng.normal(0, 0.03, len(rows))
    for n, min_ess in ((10000, 12.0), (10000, 4.0), (2000, 3.0)):
        expected = released_code(values, gaps, hparams, n, min_ess)
        got = robust_sign_error(values, gaps, hparams, n, min_ess=min_ess)
        assert got["all"]["kept"] > 0 and got["all"]["total"] == 9  # 3 pairs of lr x 2 widths + 3 lr x 1 pair
        for family in ("lr", "width", "all"):
            assert got[family]["kept"] * 2 == len(expected[family])
            for key, value in zip(("mean", "p90", "max"), summary(expected[family])):
                assert got[family][key] == pytest.approx(value, abs=1e-12, nan_ok=True), (n, family, key)
        # orientation -1 is their code run on the negated measure
        negated = robust_sign_error(values, gaps, hparams, n, orientation=-1, min_ess=min_ess)
        assert negated["all"]["mean"] == pytest.approx(summary(released_code(-values, gaps, hparams, n,
                                                                             min_ess)["all"])[0], nan_ok=True)


def test_hoeffding_weight_by_hand_and_single_seed_collections_keep_nothing():
    # n dg^2 / 2 = ln 4 -> 1 - 2/4 = 1/2 -> psi = 1/4; at dg = 0 psi = 0; large dg -> 1
    n = 599
    assert hoeffding_weight(math.sqrt(2 * math.log(4) / n), n) == pytest.approx(0.25)
    assert hoeffding_weight(0.0, n) == 0.0 and hoeffding_weight(1.0, n) == pytest.approx(1.0)
    # psi > 1/2 needs 1 - 2 exp(-n dg^2/2) > 1/sqrt(2): with n = 599, |dg| > 0.080 (REFERENCE.md: about 8 points)
    threshold = math.sqrt(-2 * math.log((1 - 1 / math.sqrt(2)) / 2) / n)
    assert threshold == pytest.approx(0.0801, abs=1e-4)
    assert hoeffding_weight(threshold, n) == pytest.approx(0.5)
    # one model per configuration: an environment holds one pair, its effective sample size is at most 1 < 12
    values, gaps = [0.0, 1.0, 2.0, 3.0], [0.0, 0.5, 0.2, 0.9]
    result = robust_sign_error(values, gaps, {"lr": [1, 2, 1, 2], "bs": [1, 1, 2, 2]}, n)
    reason = result["all"].pop("reason")
    assert result["all"] == {"mean": None, "p90": None, "max": None, "kept": 0, "total": 4}
    assert reason.startswith("too few seeds per configuration: an environment holds at most 1 pair of models")
    # four seeds per configuration (16 pairs per environment) whose gaps differ by 0.01: seeds enough, but no pair
    # is above the test set's noise, so none counts and the reason is the noise
    seeds = {"lr": [1] * 4 + [2] * 4, "seed": list(range(4)) * 2}
    noisy = robust_sign_error(list(range(8)), [0.10] * 4 + [0.11] * 4, seeds, n)["all"]
    assert noisy["kept"] == 0 and noisy["reason"].startswith("test-set noise: with n = 599 test examples")
    assert robust_sign_error(list(range(8)), [0.10] * 4 + [0.30] * 4, seeds, n)["all"]["reason"] is None
    # with the threshold at 1 every pair with psi > 1/2 is its own environment: lr (0,1) ok, (2,3) ok; bs (0,2) ok,
    # (1,3) ok -> all 0; the measure reversed -> all 1
    assert robust_sign_error(values, gaps, {"lr": [1, 2, 1, 2], "bs": [1, 1, 2, 2]}, n, min_ess=1)["all"] == \
        {"mean": 0.0, "p90": 0.0, "max": 0.0, "kept": 4, "total": 4, "reason": None}
    assert robust_sign_error(values, gaps, {"lr": [1, 2, 1, 2], "bs": [1, 1, 2, 2]}, n, orientation=-1,
                             min_ess=1)["bs"]["mean"] == 1.0
