"""PGDL's conditional mutual information: against an independent transcription of the competition's scoring
program (pgdl/scoring_program/mutual_information.py: plain loops over model dictionaries, tables per string
key) on complete grids, and its known extremes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sharpbench.scoring.pgdl import conditional_mi_pgdl


def pgdl_program(prediction: dict, model_specs: dict) -> float:
    """The scoring program's computation, loop for loop (keys built from the values of both models, 2 x 2 table
    per key of '+gap'/'-gap' by '+measure'/'-measure', mi and entropies in bits with its 1e-12, unweighted
    means over keys, the minimum over ordered pairs of distinct hyperparameters)."""
    hp_names = list(next(iter(model_specs.values()))["hparams"])
    hp_values = {h: sorted({spec["hparams"][h] for spec in model_specs.values()}) for h in hp_names}

    def entropy(p):
        normalized = p / p.sum()
        return -np.sum(normalized * np.log2(normalized + 1e-12))

    def mi_from_table(table):
        total = table.sum()
        a0_sum, a1_sum = table.sum(axis=1), table.sum(axis=0)
        mi = 0.0
        for i in range(2):
            for j in range(2):
                joint = table[i, j] / total
                if joint == 0:
                    continue
                mi += joint * np.log2(joint / (a0_sum[i] / total * a1_sum[j] / total))
        return mi, entropy(a0_sum)

    min_mi = np.inf
    for h1 in hp_names:
        for h2 in hp_names:
            if h1 == h2:
                continue
            keys = ["".join(str(v) + str(w) for v, w in combo) for combo in itertools.product(
                *[list(itertools.product(hp_values[h], hp_values[h])) for h in (h1, h2)])]
            table = {key: np.zeros((2, 2)) for key in keys}
            for mid_1 in model_specs:
                for mid_2 in model_specs:
                    k0 = 0 if model_specs[mid_1]["gen_gap"] > model_specs[mid_2]["gen_gap"] else 1
                    k1 = 0 if prediction[mid_1] > prediction[mid_2] else 1
                    key = "".join(str(model_specs[mid_1]["hparams"][h]) + str(model_specs[mid_2]["hparams"][h])
                                  for h in (h1, h2))
                    table[key][k0, k1] += 1
            results = [mi_from_table(t) for t in table.values()]
            mi = np.mean([r[0] for r in results]) / np.mean([r[1] for r in results])
            min_mi = min(mi, min_mi)
    return float(min_mi)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 3), st.integers(2, 3), st.integers(1, 2), st.data())
def test_agrees_with_the_scoring_program_on_complete_grids(lr_levels, depth_levels, seeds, data):
    grid = [(lr, depth, seed) for lr in range(lr_levels) for depth in range(depth_levels) for seed in range(seeds)]
    values = data.draw(st.lists(st.integers(0, 4), min_size=len(grid), max_size=len(grid)))
    gaps = data.draw(st.lists(st.integers(0, 4), min_size=len(grid), max_size=len(grid)))
    specs = {f"model_{i}": {"hparams": {"lr": lr, "depth": depth}, "gen_gap": gaps[i]}
             for i, (lr, depth, _) in enumerate(grid)}
    expected = pgdl_program({f"model_{i}": v for i, v in enumerate(values)}, specs)
    hparams = {"lr": [g[0] for g in grid], "depth": [g[1] for g in grid], "seed": [g[2] for g in grid]}
    got = conditional_mi_pgdl(values, gaps, hparams).value
    assert got == pytest.approx(expected, abs=1e-9, nan_ok=True)
    # orientation -1 is the program run on the negated prediction
    negated = pgdl_program({f"model_{i}": -v for i, v in enumerate(values)}, specs)
    assert conditional_mi_pgdl(values, gaps, hparams, orientation=-1).value == pytest.approx(negated, abs=1e-9,
                                                                                            nan_ok=True)


def test_one_for_the_gap_itself_and_zero_for_a_measure_independent_of_it_in_every_cell():
    rng = np.random.default_rng(0)
    lr, width, depth = np.meshgrid([1, 2, 3], [1, 2], [1, 2], indexing="ij")
    hparams = {"lr": lr.ravel().tolist(), "width": width.ravel().tolist(), "depth": depth.ravel().tolist()}
    gap = rng.permutation(12).astype(float)
    assert conditional_mi_pgdl(gap, gap, hparams).value == pytest.approx(1.0)
    # with one model per configuration and two hyperparameters, each cell holds one ordered pair: no entropy
    # anywhere, which the program scores 0
    two = {"lr": hparams["lr"][::2], "width": hparams["width"][::2]}
    assert conditional_mi_pgdl(gap[::2], gap[::2], two).value == 0.0
    # four seeds per configuration; across configurations the gap's sign is fixed (no entropy); within one, over
    # the 16 ordered pairs of seeds (s, s'), gap + iff s in {0, 1} and s' in {2, 3}, measure + iff s in {0, 3}
    # and s' in {1, 2}: P(+, +) = 1/16 = 1/4 x 1/4, independent, so the information is 0 in every cell
    configurations = [(a, b) for a in (1, 2, 3) for b in (1, 2)]
    rows = [(a, b, s) for a, b in configurations for s in range(4)]
    measure = [s in (0, 3) for _, _, s in rows]
    gap_within = [s in (0, 1) for _, _, s in rows]
    gaps = [10 * a + 5 * b + g for (a, b, _), g in zip(rows, gap_within)]
    independent = conditional_mi_pgdl([float(m) for m in measure], gaps,
                                      {"lr": [r[0] for r in rows], "width": [r[1] for r in rows]})
    assert independent.value == pytest.approx(0.0, abs=1e-12)
