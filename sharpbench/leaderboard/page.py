"""The static leaderboard page: a table of contents, one sortable table, the sweeps and the plots per collection,
then the cross-collection summary, the findings and the compute, in one HTML file with inline style and script;
the plots are SVG files beside it under plots/, loaded lazily (nothing from the network). All card text is
escaped."""

from __future__ import annotations

import html
import math
from typing import Any, Callable

from sharpbench.leaderboard.blocks import Block, Heading, to_html
from sharpbench.leaderboard.tables import (
    COLUMNS,
    ORDER_NOTE,
    SORT_COLUMN,
    ceiling_text,
    external_notes,
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right; }
td { white-space: nowrap; }
.scroll { overflow-x: auto; }
th:first-child, td:first-child { text-align: left; }
th { cursor: pointer; user-select: none; background: #f4f4f4; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
figure { display: inline-block; margin: 0.5em; }
figcaption { font-size: 0.85em; max-width: 680px; }
"""

# Sorting: a click on a header sorts the rows by that column's data-value (numbers numerically, undefined
# values last), ascending first, descending on the next click.
_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (header, column) {
    header.addEventListener("click", function () {
      var ascending = header.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (other) { other.removeAttribute("aria-sort"); });
      header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var numeric = header.dataset.type === "number";
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.value, y = b.cells[column].dataset.value;
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _data_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(float(value)) if isinstance(value, (int, float)) else str(value)


def _table(collection: str, documents: list[dict[str, Any]]) -> list[str]:
    out = ['<div class="scroll">', f'<table class="sortable" id="table-{html.escape(collection)}">', "<thead><tr>"]
    for column in COLUMNS:
        kind = "text" if column.key == "measure" else "number"
        sort = ' aria-sort="descending"' if column.key == SORT_COLUMN else ""
        out.append(f'<th data-key="{column.key}" data-type="{kind}"{sort}>{html.escape(column.header)}</th>')
    out.append("</tr></thead><tbody>")
    for document in documents:
        cells = "".join(f'<td data-value="{html.escape(_data_value(column.value(document)))}">'
                        f"{html.escape(column.text(document))}</td>" for column in COLUMNS)
        out.append(f'<tr data-measure="{html.escape(document["variant"])}">{cells}</tr>')
    out.append("</tbody></table></div>")
    return out


def _figure(document: dict[str, Any], source: str) -> str:
    name = html.escape(document["variant"])
    caption = (f"<b>{name}</b>: {html.escape(document['measure_description'])} "
               f"(source: {html.escape(document['measure_source'])})")
    return (f'<figure id="plot-{html.escape(document["collection"])}-{name}">'
            f'<img loading="lazy" width="680" height="290" alt="{name} against test error and OOD error" '
            f'src="{html.escape(source)}"><figcaption>{caption}</figcaption></figure>')


def render_page(groups: dict[str, list[dict[str, Any]]], sweeps: dict[str, list[Block]], summary: list[Block],
                intro: str, sweep_plots: dict[str, str], plot_path: Callable[[dict[str, Any]], str]) -> str:
    """The whole page as text (deterministic: no timestamps): a table of contents, per collection its table, its
    sweeps and its plots (separate files, loaded as they scroll into view), then `summary`'s sections."""
    out = ['<!DOCTYPE html>', '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<link rel="icon" href="data:,">', "<title>sharpbench leaderboard</title>",
           f"<style>{_STYLE}</style>", "</head>", "<body>", "<h1>sharpbench leaderboard</h1>",
           f"<p>{html.escape(intro)}</p>", '<nav id="contents"><b>Contents</b><ul>']
    out += [f'<li><a href="#collection-{html.escape(c)}">{html.escape(c)}</a></li>' for c in groups]
    out += [f'<li><a href="#{html.escape(b.anchor)}">{html.escape(b.text)}</a></li>' for b in summary
            if isinstance(b, Heading) and b.level == 2 and b.anchor]
    out.append("</ul></nav>")
    for collection, group in groups.items():
        out += [f'<section id="collection-{html.escape(collection)}" data-collection="{html.escape(collection)}">',
                f"<h2>{html.escape(collection)}</h2>",
                f"<p>{html.escape(group[0]['collection_description'])}</p>",
                f"<p>{html.escape(ceiling_text(group[0]))}</p>",
                f"<p>{group[0]['n_models']} models. {html.escape(ORDER_NOTE)} Click a header to sort.</p>"]
        out += _table(collection, group)
        out += [f'<p class="external">{html.escape(note)}</p>' for note in external_notes(group)]
        out += to_html(sweeps.get(collection, []))
        if collection in sweep_plots:
            out.append(f'<figure class="sweeps"><img loading="lazy" alt="{html.escape(collection)}: tau against rho" '
                       f'src="{html.escape(sweep_plots[collection])}"></figure>')
        out.append("<h3>Measure against test error and OOD error, colored by the hyperparameter it tracks "
                   "most</h3>")
        out += [_figure(document, plot_path(document)) for document in group]
        out.append("</section>")
    out += to_html(summary)
    out += [f"<script>{_SCRIPT}</script>", "</body>", "</html>", ""]
    return "\n".join(out)
