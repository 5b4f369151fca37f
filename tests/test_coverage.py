"""Coverage of the intervals and bias of the noise ceiling, simulated (tests/simulated.py): collections whose true
expected errors are known, a test set drawn afresh in each run, the models' count drawn from 44-64 and a measure =
true error + noise (its strength drawn from 0.25, 1 and 4 times the true errors' spread: tau against the true
errors about 0.85, 0.5 and 0.15).

The estimands (docs/scoring.md#intervals): ``kendall_tau_ci`` is an interval of the measure's expected tau over
test sets of this size for these models, ``noise_ceiling_ci`` of the true errors' expected tau against the observed
ones, ``kendall_tau_of_ceiling_ci`` of the ratio of the two; each truth is a mean over ``TRUTH_DRAWS`` fresh test
sets. ``python tests/test_coverage.py`` prints the table of docs/scoring.md (every regime, 400 runs each; the
published table pools seeds 0-3)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import pytest

from sharpbench.scoring.metrics import kendall_tau
from sharpbench.scoring.resampling import Bootstrap, OutcomeSet, Target, standard_targets
from sharpbench.scoring.scores import score_targets
from simulated import OOD_SHIFTS, Regime, SimulatedCollection, expected_error

TRUTH_DRAWS = 200
STRENGTHS = (0.25, 1.0, 4.0)
REGIMES = [Regime(examples, error, spread, shared)
           for examples, error in ((599, 0.03), (1000, 0.10), (10000, 0.33))
           for spread in (5, 15, 60) for shared in (False, True)]
REGIMES += [Regime(599, 0.03, spread, True, ood=True) for spread in (5, 15)]


@dataclass
class Runs:
    """Per run: the truth and the interval of tau, of the ceiling and of their ratio, the estimates of tau and of
    the ceiling, and tau's true spread over test sets (its standard deviation over the fresh ones)."""

    tau: np.ndarray            # runs x (truth, estimate, low, high)
    ceiling: np.ndarray        # runs x (truth, estimate, low, high)
    ratio: np.ndarray          # runs x (truth, low, high), NaN where the ratio is not shown
    tau_spread: np.ndarray     # runs: the standard deviation of tau over the fresh test sets

    @staticmethod
    def covered(rows: np.ndarray) -> np.ndarray:
        return (rows[:, -2] <= rows[:, 0]) & (rows[:, 0] <= rows[:, -1])

    def summary(self) -> dict[str, float]:
        shown = np.isfinite(self.ratio[:, 1])
        # the oracle: the estimate +- 1.96 x tau's true spread, an interval only a simulation can draw
        oracle = np.abs(self.tau[:, 1] - self.tau[:, 0]) <= 1.96 * self.tau_spread
        return {"tau": self.covered(self.tau).mean(), "tau_width": float(np.mean(self.tau[:, 3] - self.tau[:, 2])),
                "tau_oracle": oracle.mean(),
                "ceiling": self.covered(self.ceiling).mean(),
                "ceiling_bias": float(np.mean(self.ceiling[:, 1] - self.ceiling[:, 0])),
                "ceiling_error": float(np.mean(np.abs(self.ceiling[:, 1] - self.ceiling[:, 0]))),
                "ratio": self.covered(self.ratio[shown]).mean() if shown.any() else float("nan"),
                "ratio_shown": shown.mean()}


def _sets(outcomes: np.ndarray, regime: Regime) -> tuple[dict[str, OutcomeSet], Target]:
    if not regime.ood:
        return {"test": OutcomeSet(outcomes, outcomes)}, Target((("test", "error", 1.0),))
    sets = {f"ood/{i}": OutcomeSet(outcomes[i], outcomes[i], "test") for i in range(len(OOD_SHIFTS))}
    return sets, standard_targets([str(i) for i in range(len(OOD_SHIFTS))])["ood_error"]


def simulate(regime: Regime, runs: int, seed: int = 0, resamples: int = 1000) -> Runs:
    """``runs`` simulated collections of the regime, each scored as `score_targets` scores a collection."""
    rng = np.random.default_rng([seed, regime.examples, int(regime.spread), regime.shared, regime.ood])
    shifts = OOD_SHIFTS if regime.ood else ()
    tau, ceiling, ratio, spread = [], [], [], []
    for run in range(runs):
        collection = SimulatedCollection.of(rng, int(rng.integers(44, 65)), regime)
        values = collection.measure(rng, float(rng.choice(STRENGTHS)))
        sets, target = _sets(collection.draw(rng, regime.examples, shifts), regime)
        entry = score_targets(values, {"target": target}, sets, {},
                              bootstrap=Bootstrap(resamples=resamples, seed=run)).targets["target"]
        fresh = [_sets(collection.draw(rng, regime.examples, shifts), regime) for _ in range(TRUTH_DRAWS)]
        observed = [target.combine({key: getattr(s[key[0]], key[1]).sum(axis=1) for key in target.needed}, s)
                    for s, _ in fresh]
        taus = [kendall_tau(values, o) for o in observed]
        truth = np.mean(taus)
        true_error = _true_target(collection, regime)
        truth_ceiling = np.mean([kendall_tau(true_error, o) for o in observed])
        tau.append((truth, entry["kendall_tau"], *entry["kendall_tau_ci"]))
        spread.append(np.std(taus, ddof=1))
        ceiling.append((truth_ceiling, entry["noise_ceiling"], *entry["noise_ceiling_ci"]))
        low, high = entry["kendall_tau_of_ceiling_ci"]
        ratio.append((truth / truth_ceiling, np.nan if low is None else low, np.nan if high is None else high))
    return Runs(np.array(tau, dtype=float), np.array(ceiling, dtype=float), np.array(ratio, dtype=float),
                np.array(spread, dtype=float))


def _true_target(collection: SimulatedCollection, regime: Regime) -> np.ndarray:
    """The models' true expected target: the test error, or the mean over the OOD sets of their expected errors."""
    if not regime.ood:
        return collection.true_error
    return np.mean([expected_error(collection.ability, offset) for offset in OOD_SHIFTS], axis=0)


def test_tau_interval_covers_its_expected_value_on_a_digits_like_collection():
    """The fast check (100 runs, 200 resamples each): 599 test examples, true errors spread over 5 binomial
    standard deviations around 3%, the regime of digits-mlp."""
    found = simulate(Regime(599, 0.03, 5, False), runs=100, resamples=200).summary()
    assert found["tau"] >= 0.90
    assert abs(found["ceiling_bias"]) < 0.02


@pytest.mark.slow
@pytest.mark.parametrize("regime", REGIMES, ids=[regime.label() for regime in REGIMES])
def test_coverage(regime):
    """400 runs of each regime, 1,000 resamples each: the measured table is in docs/scoring.md."""
    found = simulate(regime, runs=400).summary()
    assert found["tau"] >= 0.90, found
    assert found["ceiling"] >= 0.80, found


if __name__ == "__main__":
    # python tests/test_coverage.py [RUNS [WORKER WORKERS [SEED]]]: every WORKERS-th regime from WORKER (to share
    # cores), the runs drawn from SEED (default 0; the table in docs/scoring.md pools seeds 0-3)
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    worker, workers = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (0, 1)
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    print("| regime | τ coverage | τ width | τ oracle coverage | ceiling coverage | ceiling bias "
          "| ceiling mean abs. error | τ / ceiling coverage (shown) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for regime in REGIMES[worker::workers]:
        s = simulate(regime, runs=runs, seed=seed).summary()
        print(f"| {regime.label()} | {s['tau']:.3f} | {s['tau_width']:.3f} | {s['tau_oracle']:.3f} | {s['ceiling']:.3f} | "
              f"{s['ceiling_bias']:+.4f} | {s['ceiling_error']:.4f} | {s['ratio']:.3f} ({s['ratio_shown']:.0%}) |",
              flush=True)
