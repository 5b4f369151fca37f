"""Generated sections of the leaderboard as plain blocks (headings, paragraphs, tables) that render both to the
README's Markdown and to the page's HTML, so that the two say the same thing."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    numeric: tuple[int, ...] = ()      # columns aligned right


Block = Union[Heading, Paragraph, Table]


def _cell(text: str) -> str:
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def to_markdown(blocks: list[Block]) -> list[str]:
    """The blocks as Markdown lines (text escaped for tables and paragraphs)."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            out += [_cell(block.text), ""]
        else:
            out.append("| " + " | ".join(_cell(h) for h in block.headers) + " |")
            out.append("|" + "|".join("---:" if i in block.numeric else "---" for i in range(len(block.headers)))
                       + "|")
            out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
            out.append("")
    return out


def to_html(blocks: list[Block]) -> list[str]:
    """The blocks as HTML lines (every text escaped)."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            anchor = f' id="{html.escape(block.anchor)}"' if block.anchor else ""
            out.append(f"<h{block.level}{anchor}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p>{html.escape(block.text)}</p>")
        else:
            out.append('<div class="scroll"><table><thead><tr>'
                       + "".join(f"<th>{html.escape(h)}</th>" for h in block.headers) + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows]
            out.append("</tbody></table></div>")
    return out
