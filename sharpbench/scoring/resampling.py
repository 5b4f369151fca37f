"""Targets as exact functions of per-example outcomes, and the resampling of evaluation examples.

A collection keeps, for each evaluation set (``train``, ``test``, ``ood/<shift>``) and each model, the outcome on
every example: ``error`` (0/1 for a classifier, kept as uint8; the squared error for a regression) and ``loss``.
Every target is a sum of coefficients times means of one outcome over one set, so it can be recomputed on a
resample of the examples. 0/1 errors enter as integer counts: a target that reads only them is a rational number
computed exactly (one division of an integer numerator by the common denominator), so that two models whose
targets are equal in exact arithmetic tie; losses are summed in float64.

A resample draws each set's examples with replacement, the same indices for every model so that models that err
on the same hard examples keep their pairing. Sets drawn on the same examples (the test split and the OOD sets
made by transforming it) share a ``sample`` and are resampled with the same indices. The draws of a sample depend
only on the seed, the sample's name and its size, so every target and every measure of a collection sees the same
resamples.
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping, Sequence

import numpy as np

OUTCOMES = ("error", "loss")
DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
_CHUNK_ELEMENTS = 25_000_000  # examples x models converted to float32 at once by the resampled sums


@dataclass(frozen=True)
class Bootstrap:
    """The resamples: how many, the seed of their draws, the intervals' level."""

    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0
    level: float = DEFAULT_LEVEL

    def indices(self, n: int) -> np.ndarray:
        """resamples x n indices of models drawn with replacement (the same for every target and measure)."""
        return np.random.default_rng(self.seed).integers(0, n, size=(self.resamples, n))

    @property
    def tails(self) -> tuple[float, float]:
        """The lower and upper quantile levels of a central interval."""
        tail = (1 - self.level) / 2
        return tail, 1 - tail


@dataclass(frozen=True)
class OutcomeSet:
    """Per-example outcomes of one evaluation set; rows are the models in collection order.

    ``error`` is uint8 (or bool) for 0/1 errors, float for a regression's squared errors; ``loss`` is float (any
    width). ``sample`` names the examples the set is drawn on ('' for its own): sets with the same sample are
    resampled with the same indices."""

    error: np.ndarray  # (models, examples)
    loss: np.ndarray  # (models, examples)
    sample: str = ""

    def __post_init__(self) -> None:
        for kind in OUTCOMES:
            array = getattr(self, kind)
            if np.ndim(array) != 2 or np.shape(array) != np.shape(self.error):
                raise ValueError(f"outcomes '{kind}' must be models x examples like 'error' "
                                 f"{np.shape(self.error)}, got {np.shape(array)}")

    @classmethod
    def of(cls, error: np.ndarray, loss: np.ndarray, sample: str = "") -> "OutcomeSet":
        """A set whose errors are stored compactly (uint8) when they are all 0 or 1."""
        error = np.asarray(error)
        if error.dtype != np.uint8 and error.dtype != bool and np.all((error == 0) | (error == 1)):
            error = error.astype(np.uint8)
        return cls(error, np.asarray(loss), sample)

    @property
    def examples(self) -> int:
        """The number of examples in the set."""
        return int(np.shape(self.error)[1])

    @property
    def models(self) -> int:
        return int(np.shape(self.error)[0])

    def counted(self, kind: str) -> bool:
        """Whether the outcome is 0/1, so that its sums are exact integer counts."""
        return kind == "error" and np.asarray(self.error).dtype in (np.uint8, np.bool_)


def sample_of(name: str, outcome_set: OutcomeSet) -> str:
    """The name of the examples a set is drawn on."""
    return outcome_set.sample or name


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

    @property
    def needed(self) -> set[tuple[str, str]]:
        return {(name, kind) for name, kind, _ in self.terms}

    def _exact_weights(self, sets: Mapping[str, OutcomeSet]) -> tuple[list[int], int] | None:
        """Integer weights of the terms' sums and their common denominator, when every term is a count."""
        if not all(sets[name].counted(kind) for name, kind, _ in self.terms):
            return None
        fractions = [Fraction(coefficient).limit_denominator(10 ** 6) / sets[name].examples
                     for name, _, coefficient in self.terms]
        denominator = math.lcm(*(f.denominator for f in fractions))
        return [int(f * denominator) for f in fractions], denominator

    def combine(self, sums: Mapping[tuple[str, str], np.ndarray], sets: Mapping[str, OutcomeSet]) -> np.ndarray:
        """The target from the sums of its (set, outcome) terms over the examples (any leading shape): exact for
        counts (equal rationals give equal floats), float64 otherwise."""
        # term by term into one array (resamples x models of 50,000 models is 0.4 GB a copy)
        exact = self._exact_weights(sets)
        total: np.ndarray | None = None
        if exact is not None:
            weights, denominator = exact
            for weight, (name, kind, _) in zip(weights, self.terms):
                term = np.multiply(sums[(name, kind)], weight, dtype=np.int64)
                total = term if total is None else np.add(total, term, out=total)
            out = total.astype(np.float64)
            del total
            out /= denominator
            return out
        for name, kind, coefficient in self.terms:
            term = np.multiply(np.asarray(sums[(name, kind)], dtype=float), coefficient)
            term /= sets[name].examples
            total = term if total is None else np.add(total, term, out=total)
        return total


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


def check_sets(target: Target, sets: Mapping[str, OutcomeSet]) -> None:
    """Refuse a target that reads a set the collection does not have."""
    missing = [name for name in target.sets if name not in sets]
    if missing:
        raise ValueError(f"the target reads evaluation sets {missing} that the outcomes do not have "
                         f"(have: {sorted(sets)})")


def full_sums(sets: Mapping[str, OutcomeSet], needed: set[tuple[str, str]]) -> dict[tuple[str, str], np.ndarray]:
    """The sum of each needed (set, outcome) over all of the set's examples, per model: integers for counts."""
    out = {}
    for name, kind in needed:
        array = getattr(sets[name], kind)
        out[(name, kind)] = (array.sum(axis=1, dtype=np.int64) if sets[name].counted(kind)
                             else array.sum(axis=1, dtype=np.float64))
    return out


def target_values(target: Target, sets: Mapping[str, OutcomeSet]) -> np.ndarray:
    """The target of every model on the full sets: (models,), exact where it reads counts."""
    check_sets(target, sets)
    return target.combine(full_sums(sets, target.needed), sets)


def example_rng(bootstrap: Bootstrap, sample: str) -> np.random.Generator:
    """The generator of one sample's example draws: seeded by the bootstrap's seed and the sample's name."""
    return np.random.default_rng([bootstrap.seed, zlib.crc32(sample.encode())])


@functools.lru_cache(maxsize=4)
def example_counts(bootstrap: Bootstrap, sample: str, examples: int) -> np.ndarray:
    """resamples x examples: how often each example is drawn in each resample (float32, exact small integers;
    read-only, kept for the next target or measure that reads the same sample)."""
    draws = example_rng(bootstrap, sample).integers(0, examples, size=(bootstrap.resamples, examples))
    counts = np.empty(draws.shape, dtype=np.float32)
    for row, drawn in enumerate(draws):      # row by row: one bincount of all rows needs 3 arrays of R x n int64
        counts[row] = np.bincount(drawn, minlength=examples)
    counts.flags.writeable = False
    return counts


def samples(sets: Mapping[str, OutcomeSet], names: Sequence[str]) -> dict[str, list[str]]:
    """{sample: the sets among ``names`` drawn on it}, refusing sets of one sample with different sizes."""
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(sample_of(name, sets[name]), []).append(name)
    for sample, members in groups.items():
        sizes = {sets[name].examples for name in members}
        if len(sizes) > 1:
            raise ValueError(f"sets {members} are drawn on the examples '{sample}' but have different sizes {sizes}")
    return groups


def resampled_sums(sets: Mapping[str, OutcomeSet], needed: set[tuple[str, str]],
                   bootstrap: Bootstrap) -> dict[tuple[str, str], np.ndarray]:
    """The sum of each needed (set, outcome) over the examples of every resample: resamples x models, int32 for
    counts (exact), float32 for the rest (about 1e-7 relative).

    The sums are one matrix product of the draw counts with the outcomes, in float32 (exact for counts below
    2^24), over chunks of models so that the outcomes are converted a slice at a time."""
    out: dict[tuple[str, str], np.ndarray] = {}
    for sample, members in samples(sets, sorted({name for name, _ in needed})).items():
        counts = example_counts(bootstrap, sample, sets[members[0]].examples)
        for name in members:
            for kind in sorted(kind for set_name, kind in needed if set_name == name):
                array = getattr(sets[name], kind)
                exact = sets[name].counted(kind)
                result = np.empty((bootstrap.resamples, sets[name].models), dtype=np.int32 if exact else np.float32)
                step = max(1, _CHUNK_ELEMENTS // max(1, array.shape[1]))
                for start in range(0, array.shape[0], step):
                    block = counts @ np.asarray(array[start:start + step], dtype=np.float32).T
                    result[:, start:start + step] = np.rint(block) if exact else block
                out[(name, kind)] = result
    return out

