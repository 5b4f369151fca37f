"""The rows of each collection's leaderboard table, and the Markdown form of the tables.

One row per published variant; the columns are shared with the HTML page. Rows are sorted by Kendall tau
against test error, largest first (undefined last), then by name."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any, Callable

SORT_COLUMN = "tau_test"


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


def tracked_hparam(document: dict[str, Any]) -> tuple[str, float] | None:
    """The hyperparameter the measure tracks most (largest |tau_vs_hparams|, first on ties) and that tau."""
    defined = [(name, tau) for name, tau in document["tau_vs_hparams"].items() if tau is not None]
    if not defined:
        return None
    return max(defined, key=lambda item: abs(item[1]))


def _tau(target: str) -> tuple[Callable, Callable]:
    return (lambda d: _score(d, target, "kendall_tau"),
            lambda d: with_interval(_score(d, target, "kendall_tau"), _score(d, target, "kendall_tau_ci")))


def _tracks_text(document: dict[str, Any]) -> str:
    tracked = tracked_hparam(document)
    return "n/a" if tracked is None else f"{tracked[0]} ({number(tracked[1])})"


def _sign_error_text(document: dict[str, Any]) -> str:
    mean, worst = _score(document, "gen_gap", "sign_error_mean"), _score(document, "gen_gap", "sign_error_max")
    return f"{number(mean, signed=False)} / {number(worst, signed=False)}"


def _label(document: dict[str, Any]) -> str:
    """The variant; for one that is not the defaults, also its parameters and sharpness-data protocol."""
    if document["variant"] == document["measure"]:
        return document["variant"]
    protocol = document["provenance"]["protocol"]
    settings = [f"{k}={v}" for k, v in document["params"].items()] + [f"{k}={protocol[k]}" for k in ("n", "m")]
    return f"{document['variant']} ({', '.join(settings)})"


COLUMNS: list[Column] = [
    Column("measure", "measure", lambda d: d["variant"], _label),
    Column("tau_test", "τ test error [95% CI]", *_tau("test_error")),
    Column("tau_gap", "τ gen. gap [95% CI]", *_tau("gen_gap")),
    Column("tau_ood", "τ OOD error [95% CI]", *_tau("ood_error")),
    Column("psi", "Ψ (gap)", lambda d: _score(d, "gen_gap", "granulated_kendall"),
           lambda d: number(_score(d, "gen_gap", "granulated_kendall"))),
    Column("cmi", "CMI (gap)", lambda d: _score(d, "gen_gap", "conditional_mi"),
           lambda d: number(_score(d, "gen_gap", "conditional_mi"), signed=False)),
    Column("sign_error", "sign error mean / max (gap)", lambda d: _score(d, "gen_gap", "sign_error_mean"),
           _sign_error_text),
    Column("tracks", "tracks most (τ)", lambda d: abs(tracked_hparam(d)[1]) if tracked_hparam(d) else None,
           _tracks_text),
    Column("seconds", "s/model", lambda d: d["provenance"]["seconds_per_model"],
           lambda d: f'{d["provenance"]["seconds_per_model"]:.3g}'),
]


def sorted_documents(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """By tau against test error, largest first, undefined last; then by variant."""
    def key(document: dict[str, Any]) -> tuple[bool, float, str]:
        tau = _score(document, "test_error", "kendall_tau")
        return tau is None, -(tau or 0.0), document["variant"]
    return sorted(documents, key=key)


def by_collection(documents: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Documents grouped by collection (collections in name order), each group sorted for its table."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        groups.setdefault(document["collection"], []).append(document)
    return {name: sorted_documents(groups[name]) for name in sorted(groups)}


def markdown_text(text: str) -> str:
    """Card text made safe for a Markdown table or paragraph: HTML escaped, pipes and newlines neutralized."""
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def markdown_tables(documents: list[dict[str, Any]]) -> str:
    """The body of leaderboard/README.md: one table per collection."""
    out = []
    for collection, group in by_collection(documents).items():
        first = group[0]
        out += [f"## {collection}", "", markdown_text(first["collection_description"]), "",
                f"{first['n_models']} models. Sorted by Kendall τ against test error, largest first.", "",
                "| " + " | ".join(column.header for column in COLUMNS) + " |",
                "|" + "|".join("---" if column.key == "measure" else "---:" for column in COLUMNS) + "|"]
        out += ["| " + " | ".join(markdown_text(column.text(document)) for column in COLUMNS) + " |"
                for document in group]
        out.append("")
    return "\n".join(out)
