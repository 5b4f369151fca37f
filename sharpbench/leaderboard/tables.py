"""The rows of each collection's leaderboard table, and the Markdown form of the tables.

One row per published variant; the columns are shared with the HTML page, and the metric columns take their
headers from the metric declarations (:data:`sharpbench.scoring.metrics.METRICS`). Scores are shown oriented by
the measure card's ``higher_means`` (multiplied by -1 for ``better``), so that a larger number always means a
better prediction; rows are sorted by the oriented Kendall tau against test error, largest first (undefined
last), then by name. Each collection's heading gives its noise ceilings (the tau that the models' true errors
reach, on average, against the target observed on sets of the collection's sizes) and says when the test-error
ceiling is below one half."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any, Callable

from sharpbench.leaderboard.properties import cost_text, cost_value, invariance_text, invariance_value
from sharpbench.leaderboard.ranks import rank_intervals
from sharpbench.scoring.metrics import METRICS

SORT_COLUMN = "tau_test"
CEILING_TARGETS = {"test_error": "test error", "gen_gap": "gen. gap", "ood_error": "OOD error"}
LOW_CEILING = 0.5      # below this, the observed test-error ranking is mostly test-set noise


def number(value: float | None, digits: int = 3, signed: bool = True) -> str:
    """A score as text: '+0.123', or 'n/a' when it is undefined (null)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def with_interval(value: float | None, interval: list[float | None] | None) -> str:
    """'+0.123 [-0.010, +0.250]' (the interval omitted when undefined)."""
    text = number(value)
    if interval and all(x is not None for x in interval):
        text += f" [{number(interval[0])}, {number(interval[1])}]"
    return text


@dataclass(frozen=True)
class Column:
    """A column: its key, its header, how a document gives its sort value and its text."""

    key: str
    header: str
    value: Callable[[dict[str, Any]], float | str | None]
    text: Callable[[dict[str, Any]], str]


def _score(document: dict[str, Any], target: str, field: str) -> Any:
    return document["scores"].get(target, {}).get(field)


def _oriented(document: dict[str, Any], target: str, field: str) -> Any:
    return document["scores"].get(target, {}).get("oriented", {}).get(field)


def tracked_hparam(document: dict[str, Any]) -> tuple[str, float] | None:
    """The hyperparameter the measure tracks most (largest |tau_vs_hparams|, first on ties) and that tau."""
    defined = [(name, tau) for name, tau in document["tau_vs_hparams"].items() if tau is not None]
    if not defined:
        return None
    return max(defined, key=lambda item: abs(item[1]))


def _metric(name: str, target: str, interval: bool = True) -> tuple[Callable, Callable]:
    """A registered metric against a target as a column's (value, text): oriented when the metric is."""
    field = _oriented if METRICS[name].oriented else _score
    value = lambda d: field(d, target, name)  # noqa: E731
    if interval:
        return value, lambda d: with_interval(value(d), field(d, target, f"{name}_ci"))
    return value, lambda d: number(value(d), signed=METRICS[name].oriented)


def _header(name: str, target: str, interval: bool = True) -> str:
    return f"{METRICS[name].symbol} {target}" + (" [95% CI]" if interval else "")


def _pgdl_text(document: dict[str, Any]) -> str:
    """PGDL's CMI against the gap, or, where PGDL's program refuses the grid, 'refused' and the value over the
    filled cells."""
    if _score(document, "gen_gap", "conditional_mi_pgdl_refused"):
        filled = _score(document, "gen_gap", "conditional_mi_pgdl_filled")
        return f"refused ({_score(document, 'gen_gap', 'conditional_mi_pgdl_refused').split(':')[0]}); " \
               f"filled cells {number(filled, signed=False)}"
    return number(_score(document, "gen_gap", "conditional_mi_pgdl"), signed=False)


def _fraction_text(document: dict[str, Any]) -> str:
    value = _score(document, "test_error", "kendall_tau_of_ceiling")
    if value is None:
        return "n/a"
    low, high = _score(document, "test_error", "kendall_tau_of_ceiling_ci") or [None, None]
    return f"{number(value, digits=2)} [{number(low, digits=2)}, {number(high, digits=2)}]"


def _tracks_text(document: dict[str, Any]) -> str:
    tracked = tracked_hparam(document)
    return "n/a" if tracked is None else f"{tracked[0]} ({number(tracked[1])})"


def _sign_error_text(document: dict[str, Any]) -> str:
    family = (_score(document, "gen_gap", "robust_sign_error") or {}).get("all")
    if not family:
        return "n/a"
    if family["mean"] is None:
        reason = (family.get("reason") or "").split(":")[0]
        return f"n/a (0 of {family['total']} kept: {reason})" if reason else f"n/a (0 of {family['total']} kept)"
    return (f"{number(family['mean'], signed=False)} / {number(family['max'], signed=False)} "
            f"({family['kept']} of {family['total']})")


def _orientation_text(document: dict[str, Any]) -> str:
    return "×1 (higher = worse)" if document["higher_means"] == "worse" else "×−1 (higher = better)"


# What a measure reads besides its weights (a result's `uses`, from its card); a result published before the field
# existed read the training data. One that reads test inputs or other models is ranked apart (see by_collection).
_READ_NAMES = {"training_data": "training data", "test_inputs": "test inputs (unlabeled)",
               "other_models": "other models"}
READS_MORE = frozenset({"test_inputs", "other_models"})
APART_MARK = "‡"


def reads(document: dict[str, Any]) -> list[str]:
    """What the result's measure reads besides the weights."""
    return list(document.get("uses", ["training_data"]))


def reads_more(document: dict[str, Any]) -> bool:
    """Whether the measure reads more than one model's weights and the training data: ranked apart."""
    return bool(READS_MORE & set(reads(document)))


def _reads_text(document: dict[str, Any]) -> str:
    return "weights, " + ", ".join(_READ_NAMES[use] for use in reads(document)) if reads(document) else "weights only"


def _rank_text(document: dict[str, Any]) -> str:
    rank = document.get("rank")
    return "n/a" if rank is None else rank.text() + (f" {APART_MARK}" if reads_more(document) else "")


def _label(document: dict[str, Any]) -> str:
    """The variant, marked when external; for one that is not the defaults, also its parameters and sharpness-data
    protocol."""
    name = document["variant"] + (EXTERNAL_MARK if document.get("external") else "")
    if document["variant"] == document["measure"]:
        return name
    protocol = document["provenance"]["protocol"]
    settings = [f"{k}={v}" for k, v in document["params"].items()] + [f"{k}={protocol[k]}" for k in ("n", "m")]
    return f"{name} ({', '.join(settings)})"


EXTERNAL_MARK = "†"


def external_notes(documents: list[dict[str, Any]]) -> list[str]:
    """The footnote of each external result of a table (its measure's code is not in this repository's measures/,
    as RobustBench marks external evaluations): what the mark after its name means and where the code came from."""
    return [f"{EXTERNAL_MARK} {document['variant']}: external: computed from code outside this repository "
            f"({document['external']['origin']}); not verifiable without it."
            for document in documents if document.get("external")]


COLUMNS: list[Column] = [
    Column("measure", "measure", lambda d: d["variant"], _label),
    Column("orientation", "oriented", lambda d: d["higher_means"], _orientation_text),
    Column("reads", "reads", lambda d: _reads_text(d), _reads_text),
    Column("tau_test", _header("kendall_tau", "test error"), *_metric("kendall_tau", "test_error")),
    Column("rank", "rank [95%]", lambda d: d["rank"].rank if d.get("rank") else None, _rank_text),
    Column("ceiling_fraction", f"{METRICS['kendall_tau'].symbol} / ceiling [95% CI]",
           lambda d: _score(d, "test_error", "kendall_tau_of_ceiling"), _fraction_text),
    Column("tau_gap", _header("kendall_tau", "gen. gap"), *_metric("kendall_tau", "gen_gap")),
    Column("tau_ood", _header("kendall_tau", "OOD error"), *_metric("kendall_tau", "ood_error")),
    Column("psi", _header("granulated_kendall", "(gap)", interval=False),
           *_metric("granulated_kendall", "gen_gap", interval=False)),
    Column("cmi", _header("conditional_mi_pgdl", "(gap)", interval=False),
           lambda d: _score(d, "gen_gap", "conditional_mi_pgdl") if not _score(
               d, "gen_gap", "conditional_mi_pgdl_refused") else _score(d, "gen_gap", "conditional_mi_pgdl_filled"),
           _pgdl_text),
    Column("sign_error", "robust sign error mean / max (gap; kept of environments)",
           lambda d: ((_score(d, "gen_gap", "robust_sign_error") or {}).get("all") or {}).get("mean"),
           _sign_error_text),
    Column("tracks", "tracks most (τ)", lambda d: abs(tracked_hparam(d)[1]) if tracked_hparam(d) else None,
           _tracks_text),
    Column("seconds", "s/model", lambda d: d["provenance"]["seconds_per_model"],
           lambda d: f'{d["provenance"]["seconds_per_model"]:.3g}'),
    # the measure's checked properties (`sharpbench measure check --publish`), at its card's defaults
    Column("invariance", "invariant: rescaling / permutation", invariance_value, invariance_text),
    Column("cost_passes", "cost (passes)", cost_value, cost_text),
]


def noise_ceilings(document: dict[str, Any]) -> dict[str, tuple[float | None, list[float | None] | None]]:
    """{target: (noise ceiling, its interval)} for the targets a heading shows (the same in every document of a
    collection: the ceiling depends on the models' outcomes, not on the measure)."""
    return {target: (_score(document, target, "noise_ceiling"), _score(document, target, "noise_ceiling_ci"))
            for target in CEILING_TARGETS if target in document["scores"]}


def ceiling_text(document: dict[str, Any]) -> str:
    """One sentence: each target's noise ceiling with its interval, and a warning when test error's is low."""
    parts = [f"{CEILING_TARGETS[target]} {with_interval(value, interval)}"
             for target, (value, interval) in noise_ceilings(document).items()]
    text = ("Noise ceiling (the τ that the models' true errors reach, on average, against the target observed on "
            "sets of these sizes, from their per-example outcomes): " + "; ".join(parts) + ".")
    test = _score(document, "test_error", "noise_ceiling")
    if test is None:
        text = "Noise ceiling: n/a (the collection keeps no per-example outcomes)."
    elif test < LOW_CEILING:
        text += (f" The test-error ceiling is below {LOW_CEILING}: test-set noise blurs much of the observed "
                 f"test-error ranking, so every τ against it is small and its interval wide; the τ / ceiling "
                 f"column reads past the noise where the ceiling's interval stays above 0.")
    return text


def sorted_documents(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """By oriented tau against test error, largest first, undefined last; then by variant."""
    def key(document: dict[str, Any]) -> tuple[bool, float, str]:
        tau = _oriented(document, "test_error", "kendall_tau")
        return tau is None, -(tau or 0.0), document["variant"]
    return sorted(documents, key=key)


def by_collection(documents: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Documents grouped by collection (collections in name order), each group sorted for its table, and each
    document (a shallow copy) given its ``rank`` (a RankInterval) among its collection's measures that read what it
    reads: those of the weights and training data alone first, then, ranked among themselves, those that read
    unlabeled test inputs or other models (they see what the others may not, so are never ranked with them)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        groups.setdefault(document["collection"], []).append(document)
    out = {}
    for name in sorted(groups):
        out[name] = []
        for apart in (False, True):
            members = [document for document in groups[name] if reads_more(document) == apart]
            ranks = rank_intervals(members) if members else {}
            out[name] += sorted_documents([{**document, "rank": ranks[document["variant"]]} for document in members])
    return out


ORDER_NOTE = ("Scores are oriented by each card's expected sign (×−1 when a larger value should mean better "
              "generalization), so larger is a better prediction; sorted by oriented Kendall τ against test error. "
              "A [95% CI] is the interval of the score's expected value over test sets of the collection's sizes, "
              "for these models (test-set noise); the rank interval is the ranks a measure takes over the same "
              "resamples (overlapping intervals: not ordered). Neither includes how the scores would move over other "
              "models from the same grid (each result file's _ci_models intervals) or over a rebuild. "
              f"Measures that read unlabeled test inputs or other models (rank marked {APART_MARK}) are listed and "
              "ranked after, and apart from, those that read the weights and training data alone.")


def markdown_text(text: str) -> str:
    """Card text made safe for a Markdown table or paragraph: HTML escaped, pipes and newlines neutralized."""
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def markdown_tables(groups: dict[str, list[dict[str, Any]]], after: dict[str, list[str]] | None = None) -> str:
    """The collections' part of leaderboard/README.md: one table per collection (`groups` as `by_collection` gives
    them), each followed by its lines in `after` (its sweeps)."""
    out = []
    for collection, group in groups.items():
        first = group[0]
        out += [f"## {collection}", "", markdown_text(first["collection_description"]), "",
                markdown_text(ceiling_text(first)), "",
                f"{first['n_models']} models. {ORDER_NOTE}", "",
                "| " + " | ".join(column.header for column in COLUMNS) + " |",
                "|" + "|".join("---" if column.key == "measure" else "---:" for column in COLUMNS) + "|"]
        out += ["| " + " | ".join(markdown_text(column.text(document)) for column in COLUMNS) + " |"
                for document in group]
        out.append("")
        out += [line for note in external_notes(group) for line in (markdown_text(note), "")]
        out += (after or {}).get(collection, [])
    return "\n".join(out)
