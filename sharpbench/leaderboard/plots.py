"""Scatter plots of a measure against test error and OOD error, colored by the hyperparameter it tracks
most (as in the study's figures), as byte-deterministic SVG: fixed id salt, no date, no creator line, text
kept as text."""

from __future__ import annotations

import io
from typing import Any

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from sharpbench.leaderboard.sweeps import Curve
from sharpbench.leaderboard.tables import tracked_hparam

_STYLE = {"svg.hashsalt": "sharpbench", "svg.fonttype": "none", "font.size": 9, "axes.titlesize": 9}
_METADATA = {"Date": None, "Creator": None}
_LEGEND_LEVELS = 8      # more levels than this: a color bar


def _level_order(value: Any) -> tuple[bool, float, str]:
    """Numbers in increasing order, then any other values by their text."""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return not numeric, float(value) if numeric else 0.0, str(value)


def _level_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _ood_mean(model: dict[str, Any]) -> float | None:
    errors = list(model["ood_error"].values())
    return sum(errors) / len(errors) if errors else None


def scatter_svg(document: dict[str, Any]) -> str:
    """Two panels (measure vs test error, measure vs mean OOD error) as SVG text."""
    models = list(document["models"].values())
    tracked = tracked_hparam(document)
    hparam = tracked[0] if tracked else None
    levels = sorted({m["hparams"].get(hparam) for m in models}, key=_level_order) if hparam else [None]
    colors = matplotlib.colormaps["viridis"].resampled(max(2, len(levels)))
    panels = [("test error", lambda m: m["test_error"])]
    if any(m["ood_error"] for m in models):
        panels.append(("OOD error (mean over shifts)", _ood_mean))
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(3.4 * len(panels), 2.9))
        axes = figure.subplots(1, len(panels), squeeze=False)[0]
        # a hyperparameter of many levels (e.g. 50 initialization scales) gets a color bar rather than a legend
        many = len(levels) > _LEGEND_LEVELS
        for ax, (label, target) in zip(axes, panels):
            for index, level in enumerate(levels):
                chosen = [m for m in models if hparam is None or m["hparams"].get(hparam) == level]
                ax.scatter([m["value"] for m in chosen], [target(m) for m in chosen], s=14,
                           color=colors(index / max(1, len(levels) - 1)),
                           label=f"{hparam}={level}" if hparam and not many else None, edgecolors="none")
            ax.set_xlabel(document["variant"])
            ax.set_ylabel(label)
            tau = document["scores"].get("test_error" if label == "test error" else "ood_error", {}).get("kendall_tau")
            ax.set_title(f"Kendall tau {tau:+.3f}" if tau is not None else "Kendall tau undefined")
            ax.grid(alpha=0.3)
        if hparam and many:
            bar = figure.colorbar(ScalarMappable(Normalize(0, len(levels) - 1), colors), ax=axes[-1],
                                  ticks=[0, len(levels) - 1])
            bar.ax.set_yticklabels([_level_text(levels[0]), _level_text(levels[-1])])
            bar.set_label(f"tracks {hparam} ({len(levels)} levels)", fontsize=7)
        elif hparam:
            axes[-1].legend(fontsize=7, loc="best", title=f"tracks {hparam}", title_fontsize=7)
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata=_METADATA)
    return buffer.getvalue()


def sweep_svg(collection: str, curves: list[Curve]) -> str:
    """Oriented Kendall tau against test error (solid) and OOD error (dashed) over rho, one panel per measure,
    plain and with normalized logits in two colors, as the study's figures plot them; SVG text."""
    measures = sorted({curve.measure for curve in curves})
    columns = min(4, len(measures))
    rows = -(-len(measures) // columns)
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(2.6 * columns, 2.3 * rows))
        axes = figure.subplots(rows, columns, squeeze=False).ravel()
        for ax, measure in zip(axes, measures):
            for curve in (c for c in curves if c.measure == measure):
                color = "tab:orange" if curve.normalized else "tab:blue"
                rhos = [point.rho for point in curve.points]
                for target, style in (("test_error", "-"), ("ood_error", "--")):
                    taus = [point.tau(target)[0] for point in curve.points]
                    ax.plot(rhos, [np.nan if t is None else t for t in taus], style, color=color, marker="o",
                            markersize=3, label=f"{'normalized' if curve.normalized else 'plain'}, "
                                                f"{'test' if target == 'test_error' else 'OOD'}")
            ax.set_xscale("log")
            ax.axhline(0, color="0.6", linewidth=0.6)
            ax.set_title(measure.removeprefix("sharpness-"))
            ax.set_xlabel("rho")
            ax.set_ylabel("oriented Kendall tau")
            ax.grid(alpha=0.3)
        for ax in axes[len(measures):]:
            ax.set_visible(False)
        axes[0].legend(fontsize=6, loc="best")
        figure.suptitle(f"{collection}: tau against rho (solid: test error, dashed: OOD error)")
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata=_METADATA)
    return buffer.getvalue()
