"""Simulated collections whose true expected errors are known: for checking intervals and the noise ceiling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

DIFFICULTY_SPREAD = 1.5  # standard deviation of the examples' logit difficulty in the correlated collections


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


@dataclass(frozen=True)
class SimulatedCollection:
    """Models' true expected errors; ``draw`` gives the 0/1 outcomes of a fresh test set (models x examples)."""

    true_error: np.ndarray
    ability: np.ndarray | None  # logit offsets of the models when examples vary in difficulty

    @classmethod
    def make(cls, rng: np.random.Generator, models: int, correlated: bool) -> "SimulatedCollection":
        """Independent examples with true errors uniform in [0.05, 0.25], or examples of varying difficulty:
        P(error) = sigmoid(ability + difficulty), difficulty ~ N(0, 1.5^2) shared by all models, so models err on
        the same hard examples and their outcomes correlate across examples."""
        if not correlated:
            return cls(rng.uniform(0.05, 0.25, models), None)
        ability = rng.normal(-2.2, 0.5, models)
        nodes, weights = hermegauss(60)  # E over difficulty by Gauss-Hermite quadrature
        true_error = _sigmoid(ability[:, None] + DIFFICULTY_SPREAD * nodes[None, :]) @ weights / weights.sum()
        return cls(true_error, ability)

    def draw(self, rng: np.random.Generator, examples: int) -> np.ndarray:
        """The outcomes on a test set of ``examples`` examples drawn from the population."""
        if self.ability is None:
            probability = np.broadcast_to(self.true_error[:, None], (len(self.true_error), examples))
        else:
            probability = _sigmoid(self.ability[:, None] + DIFFICULTY_SPREAD * rng.normal(size=examples)[None, :])
        return (rng.random(probability.shape) < probability).astype(float)

    def measure(self, rng: np.random.Generator, noise: float) -> np.ndarray:
        """A measure: the true error plus Gaussian noise of ``noise`` times the true errors' spread."""
        return self.true_error + noise * self.true_error.std() * rng.normal(size=len(self.true_error))
