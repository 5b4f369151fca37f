"""The leaderboard's generated parts on synthetic results with known answers: sweeps gathered into curves and out
of the main tables, paired differences over shared resamples, the findings' verdicts (including 'undecided' under
a low noise ceiling), the cross-collection summary, and the plan of `sharpbench leaderboard reproduce`."""

from __future__ import annotations

import pytest

from sharpbench.cards.discovery import Registry
from sharpbench.leaderboard.findings import CLAIMS, findings, paired_difference
from sharpbench.leaderboard.reproduce import SWEEP_FACTORS, plan
from sharpbench.leaderboard.summary import best_trackers, summary_rows
from sharpbench.leaderboard.sweeps import curves, split
from sharpbench.leaderboard.tables import by_collection


def result(measure: str, tau: float, *, collection: str = "c", rho: float | None = None, normalize: bool = False,
           shift: float = 0.0, ceiling: float = 0.9, tracks: dict[str, float] | None = None,
           ood: float = 0.3, default_rho: float = 0.1) -> dict:
    """A published result whose oriented tau against test error is `tau` on every one of 20 resamples shifted
    by `shift` (so its interval is [tau + shift - ..]), with the parameters of a sharpness card."""
    params = {"rho": default_rho if rho is None else rho, "normalize_logits": normalize, "steps": 20}
    default = rho is None and not normalize
    replicates = [tau + shift * (i - 9.5) / 9.5 for i in range(20)]
    return {
        "collection": collection, "measure": measure, "higher_means": "worse", "n_models": 10,
        "variant": measure if default else f"{measure}@{abs(hash((rho, normalize))) % 10**12:012d}",
        "params": params, "tau_vs_hparams": tracks or {"learning_rate": 0.5, "width": 0.1},
        "provenance": {"protocol": {"n": 64, "m": 16}, "seconds_per_model": 0.5, "device": "cpu"},
        "scoring": {"resample_fingerprint": "f" * 64}, "replicates": {"test_error": replicates},
        "scores": {target: {"oriented": {"kendall_tau": value, "kendall_tau_ci": [value - abs(shift), value + abs(shift)]},
                            "noise_ceiling": ceiling, "kendall_tau_of_ceiling": value / ceiling}
                   for target, value in (("test_error", tau), ("ood_error", ood), ("test_loss", tau))},
    }


def test_sweep_points_leave_the_main_table_and_form_curves_in_increasing_rho():
    default = result("sharpness-worst-linf-adaptive", 0.4)
    points = [result("sharpness-worst-linf-adaptive", t, rho=r) for r, t in ((0.2, 0.3), (0.025, 0.1), (0.05, 0.2))]
    normalized = [result("sharpness-worst-linf-adaptive", 0.5, rho=r, normalize=True) for r in (0.05, 0.1)]
    other = {**result("sharpness-worst-linf-adaptive", 0.1, rho=0.3), "variant": "other@1"}
    other["provenance"] = {**other["provenance"], "protocol": {"n": 32, "m": 16}}   # another protocol: a row
    main, swept = split([default, *points, *normalized, other])
    assert [d["variant"] for d in main] == [default["variant"], "other@1"] and len(swept) == 5
    found = curves([default, *points, *normalized, other])
    assert [(c.normalized, [p.rho for p in c.points]) for c in found] == [(False, [0.025, 0.05, 0.1, 0.2]),
                                                                         (True, [0.05, 0.1])]
    assert [p.tau("test_error")[0] for p in found[0].points] == [0.1, 0.2, 0.4, 0.3]


def test_paired_differences_use_the_shared_resamples():
    a, b = result("a", 0.5, shift=0.1), result("b", 0.3, shift=0.1)
    difference, low, high = paired_difference(a, b)
    assert difference == pytest.approx(0.2) and low == pytest.approx(0.2) and high == pytest.approx(0.2)
    b["scoring"] = {"resample_fingerprint": "0" * 64}
    assert paired_difference(a, b)[1:] == (None, None)


def _verdicts(documents: list[dict]) -> dict[str, str]:
    groups = by_collection(split(documents)[0])
    points = {c: split([d for d in documents if d["collection"] == c])[1] for c in groups}
    return {claim.title.split(" (")[0]: verdicts["c"].verdict for claim, verdicts in findings(groups, points)}


def test_findings_decide_each_claim_from_the_numbers():
    variants = [f"sharpness-{k}-{n}-{s}" for k in ("worst", "avg") for n in ("linf", "l2")
                for s in ("adaptive", "standard")]
    # adaptive better than standard by 0.3 on every resample in 3 of 4 pairs; all weak (< 0.5) with tight intervals
    taus = {v: (0.4 if v.endswith("adaptive") and "avg-l2" not in v else 0.1) for v in variants}
    documents = [result(v, taus[v], shift=0.01) for v in variants]
    documents.append(result("sharpness-worst-linf-adaptive", 0.05, rho=0.1, normalize=True, shift=0.01))
    verdicts = _verdicts(documents)
    assert verdicts["Sharpness correlates only weakly with generalization once hyperparameters beyond the "
                    "learning rate vary"] == "holds"
    assert verdicts["Adaptive sharpness is not better than standard sharpness in general"] == "does not hold"
    assert verdicts["Logit normalization changes the picture"] == "holds"
    assert verdicts["Sharpness mostly tracks the learning rate"] == "holds"
    assert verdicts["On the toy model, standard sharpness tracks the test loss while adaptive sharpness does not"] \
        == "not applicable"
    # the same numbers under a noise ceiling of 0.3: the test-error claims are undecided, and say why
    low = [result(v, taus[v], shift=0.01, ceiling=0.3) for v in variants]
    verdicts = _verdicts(low)
    assert verdicts["Adaptive sharpness is not better than standard sharpness in general"] == "undecided"
    assert len(CLAIMS) == 6


def test_the_summary_ranks_measures_across_collections_and_names_the_best_tracker():
    documents = [result("a", 0.6, collection="x", tracks={"learning_rate": 0.2}),
                 result("b", 0.2, collection="x", tracks={"learning_rate": -0.7}),
                 result("a", 0.1, collection="y"), result("b", 0.5, collection="y"),
                 {**result("d", 0.9, collection="y"), "uses": ["test_inputs", "other_models"]}]
    groups = by_collection(documents)
    rows = summary_rows(groups)
    assert [(r.measure, r.mean_rank, r.apart) for r in rows] == [("a", 1.5, False), ("b", 1.5, False),
                                                                ("d", 1.0, True)]
    assert rows[0].cell("x").startswith("+0.60 (0.67) / +0.30") and rows[2].cell("x") == "—"
    assert best_trackers(groups["x"]) == {"learning_rate": ("b", -0.7)}
    assert best_trackers(groups["y"]) == {"learning_rate": ("b", 0.5), "width": ("b", 0.1)}   # ties: the first row


def test_reproduce_plans_every_measure_then_the_studys_sweeps():
    registry = Registry.discover()
    measures = ["param-norm", "sharpness-worst-linf-adaptive", "sharpness-avg-l2-standard"]
    steps = plan(registry, ["digits-mlp"], measures)
    assert [s.overrides for s in steps[:3]] == [(), (), ()]
    adaptive = [dict(s.overrides) for s in steps[3:] if s.measure == "sharpness-worst-linf-adaptive"]
    standard = [dict(s.overrides) for s in steps[3:] if s.measure == "sharpness-avg-l2-standard"]
    rho = registry.measure("sharpness-worst-linf-adaptive").params["rho"].default
    assert sorted(o["rho"] for o in adaptive if "normalize_logits" not in o) == \
        [rho * f for f in SWEEP_FACTORS if f != 1.0]                        # the default radius is its own step
    assert sorted(o["rho"] for o in adaptive if o.get("normalize_logits")) == [rho * f for f in SWEEP_FACTORS]
    assert len(standard) == 3 and not any("normalize_logits" in o for o in standard)
    assert not [s for s in steps if s.measure == "param-norm" and s.overrides]
    assert len(plan(registry, ["digits-mlp"], measures, sweeps=False)) == 3
    regression = plan(registry, ["diag-linear-nets"], measures)       # one output: no logits to normalize
    assert len(regression) == len(steps) - 4 and not any("normalize_logits" in dict(s.overrides) for s in regression)
