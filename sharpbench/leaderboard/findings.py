"""The study's qualitative claims, checked on each collection from the published results: a verdict and the numbers
and intervals that decide it, generated (never typed). A claim about test error is undecided on a collection whose
test-error noise ceiling is below one half: there, most of the observed ranking is test-set noise.

Differences between two measures are paired: both were scored on the same resamples of models and test examples
(their results share a resample fingerprint), so the interval of the difference is the 2.5-97.5 percentile of
the per-resample differences of their oriented taus against test error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from sharpbench.leaderboard.blocks import Block, Heading, Paragraph, Table
from sharpbench.leaderboard.summary import oriented_tau
from sharpbench.leaderboard.tables import LOW_CEILING, number, tracked_hparam

KINDS, NORMS = ("worst", "avg"), ("linf", "l2")
ADAPTIVE = [f"sharpness-{k}-{n}-adaptive" for k in KINDS for n in NORMS]
STANDARD = [f"sharpness-{k}-{n}-standard" for k in KINDS for n in NORMS]
TOY = "diag-linear-nets"          # the study's toy model: diagonal linear networks
WEAK = 0.5                        # an oriented tau below this (with its interval) is a weak correlation
LEARNING_RATE = "learning_rate"


@dataclass(frozen=True)
class Verdict:
    """A claim on one collection: 'holds', 'does not hold', 'undecided' or 'not published', and why."""

    verdict: str
    evidence: str


@dataclass(frozen=True)
class Claim:
    """One of the study's claims and its check on one collection's default results and sweeps."""

    title: str
    check: Callable[[str, dict[str, dict[str, Any]], list[dict[str, Any]]], Verdict]


def _ci(document: dict[str, Any], target: str) -> list[float | None]:
    return document["scores"].get(target, {}).get("oriented", {}).get("kendall_tau_ci") or [None, None]


def _tau_text(document: dict[str, Any], target: str = "test_error") -> str:
    low, high = _ci(document, target)
    return f"{number(oriented_tau(document, target), 2)} [{number(low, 2)}, {number(high, 2)}]"


def _ceiling(documents: dict[str, dict[str, Any]]) -> float | None:
    first = next(iter(documents.values()))
    return first["scores"].get("test_error", {}).get("noise_ceiling")


def _too_noisy(documents: dict[str, dict[str, Any]]) -> Verdict | None:
    ceiling = _ceiling(documents)
    if ceiling is not None and ceiling < LOW_CEILING:
        return Verdict("undecided", f"the test-error noise ceiling is {ceiling:.2f} (< {LOW_CEILING}): too low "
                                    f"to decide")
    return None


def paired_difference(a: dict[str, Any], b: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    """(tau_a - tau_b against test error, and the 95% percentile interval of the per-resample difference), the
    interval None when the two were not scored on the same resamples."""
    ta, tb = oriented_tau(a, "test_error"), oriented_tau(b, "test_error")
    if ta is None or tb is None:
        return None, None, None
    same = a["scoring"].get("resample_fingerprint") == b["scoring"].get("resample_fingerprint")
    ra, rb = a.get("replicates", {}).get("test_error"), b.get("replicates", {}).get("test_error")
    if not same or not ra or not rb or len(ra) != len(rb):
        return ta - tb, None, None
    diff = np.array([np.nan if x is None or y is None else x - y for x, y in zip(ra, rb)], dtype=float)
    low, high = np.nanpercentile(diff, [2.5, 97.5])
    return ta - tb, float(low), float(high)


def _difference_text(name: str, value: tuple[float | None, float | None, float | None]) -> str:
    return f"{name} {number(value[0], 2)} [{number(value[1], 2)}, {number(value[2], 2)}]"


def _weak(collection: str, documents: dict[str, dict[str, Any]], points: list[dict[str, Any]]) -> Verdict:
    present = [documents[m] for m in ADAPTIVE + STANDARD if m in documents]
    if not present:
        return Verdict("not published", "no sharpness variant is published here")
    noisy = _too_noisy(documents)
    best = max(present, key=lambda d: oriented_tau(d, "test_error") or -2.0)
    varied = sorted(best["tau_vs_hparams"])
    evidence = (f"best of {len(present)} variants: {best['measure']} {_tau_text(best)}; hyperparameters varied: "
                f"{', '.join(varied)}")
    if noisy:
        return Verdict(noisy.verdict, f"{noisy.evidence}; {evidence}")
    if varied == [LEARNING_RATE]:
        return Verdict("not applicable", f"only the learning rate varies; {evidence}")
    low, high = _ci(best, "test_error")
    if high is not None and high < WEAK:
        return Verdict("holds", f"{evidence} (interval below {WEAK})")
    if low is not None and low >= WEAK:
        return Verdict("does not hold", f"{evidence} (interval above {WEAK})")
    return Verdict("undecided", f"{evidence} (interval spans {WEAK})")


def _adaptive_not_better(collection: str, documents: dict[str, dict[str, Any]],
                         points: list[dict[str, Any]]) -> Verdict:
    pairs = [(a, s) for a, s in zip(ADAPTIVE, STANDARD) if a in documents and s in documents]
    if not pairs:
        return Verdict("not published", "no adaptive/standard pair is published here")
    differences = [(a, paired_difference(documents[a], documents[s])) for a, s in pairs]
    better = sum(1 for _, (_, low, _) in differences if low is not None and low > 0)
    evidence = ("adaptive − standard (τ test): " + "; ".join(_difference_text(a.removeprefix("sharpness-")
                                                                               .removesuffix("-adaptive"), d)
                                                               for a, d in differences)
                + f"; adaptive better (interval above 0) in {better} of {len(pairs)}")
    noisy = _too_noisy(documents)
    if noisy:
        return Verdict(noisy.verdict, f"{noisy.evidence}; {evidence}")
    return Verdict("holds" if 2 * better < len(pairs) else "does not hold", evidence)


def _normalization_changes(collection: str, documents: dict[str, dict[str, Any]],
                           points: list[dict[str, Any]]) -> Verdict:
    changes = []
    for measure in ADAPTIVE:
        if measure not in documents:
            continue
        normalized = [p for p in points if p["measure"] == measure and p["params"].get("normalize_logits")
                      and p["params"]["rho"] == documents[measure]["params"]["rho"]]
        if normalized:
            changes.append((measure, paired_difference(normalized[0], documents[measure])))
    if not changes:
        return Verdict("not published", "no adaptive variant with normalized logits at its default radius")
    moved = sum(1 for _, (_, low, high) in changes if low is not None and (low > 0 or high < 0))
    evidence = ("normalized − plain (τ test, default radius): "
                + "; ".join(_difference_text(m.removeprefix("sharpness-"), d) for m, d in changes)
                + f"; changed (interval excludes 0) in {moved} of {len(changes)}")
    noisy = _too_noisy(documents)
    if noisy:
        return Verdict(noisy.verdict, f"{noisy.evidence}; {evidence}")
    return Verdict("holds" if moved else "does not hold", evidence)


def _toy_standard_tracks_loss(collection: str, documents: dict[str, dict[str, Any]],
                              points: list[dict[str, Any]]) -> Verdict:
    if collection != TOY:
        return Verdict("not applicable", "a claim about the toy model (diag-linear-nets)")
    standard = [documents[m] for m in STANDARD if m in documents]
    adaptive = [documents[m] for m in ADAPTIVE if m in documents]
    if not standard or not adaptive:
        return Verdict("not published", "the standard and adaptive variants are not all published here")
    evidence = "τ against test loss: " + "; ".join(f"{d['measure'].removeprefix('sharpness-')} "
                                                   f"{_tau_text(d, 'test_loss')}" for d in standard + adaptive)
    tracks = all((_ci(d, "test_loss")[0] or -1) > 0 for d in standard)
    adaptive_too = any((_ci(d, "test_loss")[0] or -1) > 0 for d in adaptive)
    if tracks and not adaptive_too:
        return Verdict("holds", evidence)
    return Verdict("does not hold", evidence + ("; adaptive variants track it too" if adaptive_too else
                                                "; not every standard variant tracks it"))


def _ood_weak_or_negative(collection: str, documents: dict[str, dict[str, Any]],
                          points: list[dict[str, Any]]) -> Verdict:
    present = [documents[m] for m in ADAPTIVE + STANDARD if m in documents and
               oriented_tau(documents[m], "ood_error") is not None]
    if not present:
        return Verdict("not published", "no sharpness variant with an OOD score is published here")
    negative = [d for d in present if (_ci(d, "ood_error")[1] or 1) < 0]
    weak = [d for d in present if (_ci(d, "ood_error")[1] or 1) < WEAK]
    best = max(present, key=lambda d: oriented_tau(d, "ood_error") or -2.0)
    evidence = (f"{len(weak)} of {len(present)} variants with τ OOD below {WEAK} (interval), {len(negative)} "
                f"negative (interval below 0); best {best['measure']} {_tau_text(best, 'ood_error')}")
    return Verdict("holds" if weak else "does not hold", evidence)


def _tracks_learning_rate(collection: str, documents: dict[str, dict[str, Any]],
                          points: list[dict[str, Any]]) -> Verdict:
    present = [documents[m] for m in ADAPTIVE + STANDARD if m in documents]
    if not present:
        return Verdict("not published", "no sharpness variant is published here")
    if LEARNING_RATE not in present[0]["tau_vs_hparams"]:
        return Verdict("not applicable", "the learning rate does not vary here")
    tracked = [tracked_hparam(d) for d in present]
    lr = sum(1 for t in tracked if t is not None and t[0] == LEARNING_RATE)
    others = sorted({t[0] for t in tracked if t is not None and t[0] != LEARNING_RATE})
    evidence = (f"learning rate tracked most by {lr} of {len(present)} variants"
                + (f" (the others: {', '.join(others)})" if others else ""))
    return Verdict("holds" if 2 * lr > len(present) else "does not hold", evidence)


CLAIMS = [
    Claim("Sharpness correlates only weakly with generalization once hyperparameters beyond the learning rate vary "
          f"(the best variant's τ against test error below {WEAK})", _weak),
    Claim("Adaptive sharpness is not better than standard sharpness in general (adaptive significantly better in "
          "fewer than half of the four pairs)", _adaptive_not_better),
    Claim("Logit normalization changes the picture (the τ of some adaptive variant moves significantly)",
          _normalization_changes),
    Claim("On the toy model, standard sharpness tracks the test loss while adaptive sharpness does not",
          _toy_standard_tracks_loss),
    Claim(f"The correlation with OOD error is weak or negative in some settings (τ OOD below {WEAK})",
          _ood_weak_or_negative),
    Claim("Sharpness mostly tracks the learning rate (the hyperparameter most sharpness variants track most)",
          _tracks_learning_rate),
]


def findings(groups: dict[str, list[dict[str, Any]]],
             sweep_points: dict[str, list[dict[str, Any]]]) -> list[tuple[Claim, dict[str, Verdict]]]:
    """Each claim with its verdict on each collection (`groups`: the main results by collection; `sweep_points`:
    each collection's sweep results)."""
    out = []
    for claim in CLAIMS:
        verdicts = {}
        for collection, documents in groups.items():
            defaults = {d["measure"]: d for d in documents if d["variant"] == d["measure"]}
            verdicts[collection] = claim.check(collection, defaults, sweep_points.get(collection, []))
        out.append((claim, verdicts))
    return out


def findings_blocks(groups: dict[str, list[dict[str, Any]]],
                    sweep_points: dict[str, list[dict[str, Any]]]) -> list[Block]:
    """The Findings section: per claim, how many collections it holds on, and per collection the verdict and the
    numbers that decide it."""
    out: list[Block] = [
        Heading(2, "Findings", "findings"),
        Paragraph("The study's qualitative claims, checked on each collection from the results above (generated by "
                  "`sharpbench leaderboard build`; τ is oriented, intervals are 95%). A claim about test error is "
                  f"undecided where the collection's test-error noise ceiling is below {LOW_CEILING}.")]
    for claim, verdicts in findings(groups, sweep_points):
        decided = [c for c, v in verdicts.items() if v.verdict in ("holds", "does not hold")]
        holds = [c for c in decided if verdicts[c].verdict == "holds"]
        out += [Heading(3, claim.title),
                Paragraph(f"Holds on {len(holds)} of the {len(decided)} collections where it could be decided"
                          + (f" ({', '.join(holds)})" if holds else "") + "."),
                Table(["collection", "verdict", "evidence"], [[c, v.verdict, v.evidence] for c, v in verdicts.items()])]
    return out
