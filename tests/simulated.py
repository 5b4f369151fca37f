"""Simulated collections whose true expected errors are known: for checking intervals and the noise ceiling.

A regime fixes the number of test examples, the models' mean error, how far apart their true errors lie (the width
of their uniform spread, in binomial standard deviations of one model's test error), and whether the examples
differ in difficulty (shared hard examples: P(error) = sigmoid(ability + difficulty), the difficulty drawn per
example and shared by every model, so that models err on the same examples); optionally OOD sets drawn on the test
examples (the same images, each shifted, so the sets' errors correlate example by example)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

DIFFICULTY_SPREAD = 1.5  # standard deviation of the examples' logit difficulty in the correlated collections
OOD_SHIFTS = (0.6, 1.0)  # logit offsets of the OOD sets drawn on the test examples
_NODES, _WEIGHTS = hermegauss(80)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def expected_error(ability: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """E over the examples' difficulty of sigmoid(ability + offset + difficulty), by Gauss-Hermite quadrature."""
    return _sigmoid(ability[:, None] + offset + DIFFICULTY_SPREAD * _NODES[None, :]) @ _WEIGHTS


@dataclass(frozen=True)
class Regime:
    """How a simulated collection is drawn (see the module's docstring)."""

    examples: int
    mean_error: float
    spread: float          # width of the true errors' uniform spread, in binomial standard deviations
    shared: bool           # examples of varying difficulty, shared by every model
    ood: bool = False      # two OOD sets drawn on the test examples

    def label(self) -> str:
        return (f"{self.examples} examples, error {self.mean_error:.0%}, spread {self.spread:g} sd, "
                f"{'shared hard examples' if self.shared else 'independent examples'}"
                + (", OOD sets on the test images" if self.ood else ""))


@dataclass(frozen=True)
class SimulatedCollection:
    """Models' true expected errors; ``draw`` gives the 0/1 outcomes of a fresh test set (models x examples)."""

    true_error: np.ndarray
    ability: np.ndarray | None  # logit offsets of the models when examples vary in difficulty

    @classmethod
    def make(cls, rng: np.random.Generator, models: int, correlated: bool) -> "SimulatedCollection":
        """Independent examples with true errors uniform in [0.05, 0.25], or examples of varying difficulty:
        P(error) = sigmoid(ability + difficulty), difficulty ~ N(0, 1.5^2) shared by all models."""
        if not correlated:
            return cls(rng.uniform(0.05, 0.25, models), None)
        ability = rng.normal(-2.2, 0.5, models)
        return cls(expected_error(ability), ability)

    @classmethod
    def of(cls, rng: np.random.Generator, models: int, regime: Regime) -> "SimulatedCollection":
        """True errors uniform over ``regime.spread`` binomial standard deviations around its mean error."""
        sd = np.sqrt(regime.mean_error * (1 - regime.mean_error) / regime.examples)
        width = regime.spread * sd
        low = max(regime.mean_error - width / 2, 1e-3)
        true_error = rng.uniform(low, low + width, models)
        if not regime.shared and not regime.ood:
            return cls(true_error, None)
        grid = np.linspace(-14, 8, 4000)
        ability = np.interp(true_error, expected_error(grid), grid)
        return cls(expected_error(ability), ability)

    def draw(self, rng: np.random.Generator, examples: int, shifts: tuple[float, ...] = ()) -> np.ndarray:
        """The outcomes on a test set of ``examples`` examples drawn from the population; with ``shifts``, one set
        per logit offset drawn on the same examples (sets x models x examples)."""
        if self.ability is None:
            probability = np.broadcast_to(self.true_error[:, None], (len(self.true_error), examples))
            return (rng.random(probability.shape) < probability).astype(np.uint8)
        difficulty = DIFFICULTY_SPREAD * rng.normal(size=examples)[None, :]
        if not shifts:
            return (rng.random((len(self.ability), examples)) < _sigmoid(self.ability[:, None] + difficulty)
                    ).astype(np.uint8)
        return np.stack([(rng.random((len(self.ability), examples)) < _sigmoid(self.ability[:, None] + offset
                                                                                + difficulty)).astype(np.uint8)
                         for offset in shifts])

    def measure(self, rng: np.random.Generator, noise: float) -> np.ndarray:
        """A measure: the true error plus Gaussian noise of ``noise`` times the true errors' spread."""
        return self.true_error + noise * self.true_error.std() * rng.normal(size=len(self.true_error))
