"""Targets as means of per-example outcomes, and their resampling over test examples.

A collection keeps, for each evaluation set (``train``, ``test``, ``ood/<shift>``) and each model, the outcome
on every example: ``error`` (0/1 for a classifier, the squared error for a regression) and ``loss``. Every
target is a sum of coefficients times means of one outcome over one set's examples, so it can be recomputed
on a resample of the examples. A two-way resample draws the models with replacement (`Bootstrap.indices`,
shared with the model-only bootstrap) and, for each set, the examples with replacement, the same example
indices for every model so that differences between models keep their pairing (two models that err on the
same hard examples differ less than two independent binomials). The draws of a set depend only on the seed,
the set's name and its size, so every target and every measure of a collection sees the same resamples.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from sharpbench.scoring.metrics import Bootstrap

OUTCOMES = ("error", "loss")


@dataclass(frozen=True)
class OutcomeSet:
    """Per-example outcomes of one evaluation set; rows are the models in collection order."""

    error: np.ndarray  # (models, examples)
    loss: np.ndarray  # (models, examples)

    def __post_init__(self) -> None:
        for kind in OUTCOMES:
            array = getattr(self, kind)
            if np.ndim(array) != 2 or np.shape(array) != np.shape(self.error):
                raise ValueError(f"outcomes '{kind}' must be models x examples like 'error' "
                                 f"{np.shape(self.error)}, got {np.shape(array)}")

    @property
    def examples(self) -> int:
        """The number of examples in the set."""
        return int(np.shape(self.error)[1])


@dataclass(frozen=True)
class Target:
    """A target: the sum of coefficient x (mean over a set's examples of one outcome) over its terms."""

    terms: tuple[tuple[str, str, float], ...]  # (set name, "error" | "loss", coefficient)

    def __post_init__(self) -> None:
        for _, kind, _ in self.terms:
            if kind not in OUTCOMES:
                raise ValueError(f"a target term's outcome must be one of {OUTCOMES}, got '{kind}'")

    @property
    def sets(self) -> tuple[str, ...]:
        """The names of the sets the target reads, in order of first use."""
        return tuple(dict.fromkeys(name for name, _, _ in self.terms))

    def combine(self, means: Mapping[tuple[str, str], np.ndarray]) -> np.ndarray:
        """The target from the means of its (set, outcome) terms (any leading shape)."""
        return sum(coefficient * means[(name, kind)] for name, kind, coefficient in self.terms)


def standard_targets(shifts: Sequence[str]) -> dict[str, Target]:
    """test_error, gen_gap, ood_error (mean over shifts), ood_error/<shift>, test_loss, ood_loss, ood_loss/<shift>
    (no ood_* when there is no shift)."""
    def ood(kind: str) -> dict[str, Target]:
        if not shifts:
            return {}
        mean = Target(tuple((f"ood/{shift}", kind, 1 / len(shifts)) for shift in shifts))
        return {f"ood_{kind}": mean, **{f"ood_{kind}/{shift}": Target(((f"ood/{shift}", kind, 1.0),))
                                        for shift in shifts}}

    return {"test_error": Target((("test", "error", 1.0),)),
            "gen_gap": Target((("test", "error", 1.0), ("train", "error", -1.0))),
            **ood("error"),
            "test_loss": Target((("test", "loss", 1.0),)),
            **ood("loss")}


def _check_sets(target: Target, sets: Mapping[str, OutcomeSet]) -> None:
    """Refuse a target that reads a set the collection does not have."""
    missing = [name for name in target.sets if name not in sets]
    if missing:
        raise ValueError(f"the target reads evaluation sets {missing} that the outcomes do not have "
                         f"(have: {sorted(sets)})")


def target_values(target: Target, sets: Mapping[str, OutcomeSet]) -> np.ndarray:
    """The target of every model on the full sets: (models,)."""
    _check_sets(target, sets)
    return target.combine({(name, kind): getattr(sets[name], kind).mean(axis=1)
                           for name, kind, _ in target.terms})


def example_rng(bootstrap: Bootstrap, name: str) -> np.random.Generator:
    """The generator of one set's example draws: seeded by the bootstrap's seed and the set's name."""
    return np.random.default_rng([bootstrap.seed, zlib.crc32(name.encode())])


def _counts(draws: np.ndarray, examples: int) -> np.ndarray:
    """resamples x draws indices -> resamples x examples counts of each example."""
    offsets = np.arange(len(draws))[:, None] * examples
    return np.bincount((draws + offsets).ravel(), minlength=len(draws) * examples).reshape(len(draws), examples)


@dataclass(frozen=True)
class ResampledMeans:
    """Means of one outcome over resampled examples, per resample and model: over all n draws, and over the
    first and the other half of the draws (two independent halves of the resample, the same for every model:
    the noise ceiling's split-half replicates; splitting the draws rather than the set's examples keeps each
    half's noise what a half of a test set has)."""

    full: np.ndarray  # (resamples, models)
    half_a: np.ndarray
    half_b: np.ndarray


def resample_examples(sets: Mapping[str, OutcomeSet], needed: set[tuple[str, str]],
                      bootstrap: Bootstrap) -> dict[tuple[str, str], ResampledMeans]:
    """The means of each needed (set, outcome) on every resample of the set's examples."""
    out: dict[tuple[str, str], ResampledMeans] = {}
    for name in sorted({name for name, _ in needed}):
        examples = sets[name].examples
        draws = example_rng(bootstrap, name).integers(0, examples, size=(bootstrap.resamples, examples))
        # float32 products: twice as fast; exact for 0/1 errors (integer sums below 2^24), 1e-7 relative for losses
        counts = _counts(draws, examples).astype(np.float32)
        half = _counts(draws[:, : examples // 2], examples).astype(np.float32)
        for kind in sorted(kind for set_name, kind in needed if set_name == name):
            outcomes = np.asarray(getattr(sets[name], kind), dtype=np.float32).T  # examples x models
            total, in_half = (counts @ outcomes).astype(float), (half @ outcomes).astype(float)
            out[(name, kind)] = ResampledMeans(total / examples, in_half / (examples // 2),
                                               (total - in_half) / (examples - examples // 2))
    return out


def needed_outcomes(targets: Mapping[str, Target]) -> set[tuple[str, str]]:
    """Every (set, outcome) that some target reads."""
    return {(name, kind) for target in targets.values() for name, kind, _ in target.terms}
