"""A self-contained HTML page of the report: inline style, figures as base64 PNG data URIs, and a
small inline script that sorts any table by a click on its header. Nothing is fetched from
elsewhere, so the file can be mailed or archived as is.
"""
from __future__ import annotations

import base64
import html
import re

from harness.report.document import Block, Gallery, Plot, Section, Table

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
code { background: #f3f3f3; padding: 0 .2em; }
blockquote { margin: 1em 0; padding: .5em 1em; border-left: 4px solid #d08700;
             background: #fff7e6; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; white-space: nowrap; }
th { background: #f0f0f0; position: sticky; top: 0; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
tr:nth-child(even) td { background: #fafafa; }
/* Verdicts at a glance: helped green, hurt red (the text says it too, for colour-blind readers). */
td.verdict.positive { background: #d8f0d8; } td.verdict.negative { background: #f6d5d5; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 12px; color: #555; }
/* Figures keep their own width (never scaled up), as many per row as fit. */
.gallery { display: flex; flex-wrap: wrap; gap: 0 1em; align-items: flex-start; }
.gallery figure { flex: 0 1 auto; margin: .5em 0; }
.gallery figcaption { max-width: 560px; }
nav ul { columns: 2; }
"""

# Numbers sort as numbers: a cell sorts numerically by its leading number ("1.9 [0.2, 3.7]")
# when every filled cell of the column starts with one; missing values ("–") go last.
SORT_SCRIPT = """
(function () {
  var NUM = /^[-+]?(\\d+\\.?\\d*|\\.\\d+)(e[-+]?\\d+)?(\\s|$)/i;
  function missing(text) { return text === "" || text === "\\u2013"; }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, col) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var text = function (row) { return row.cells[col].textContent.trim(); };
        var numeric = rows.every(function (r) { return missing(text(r)) || NUM.test(text(r)); });
        var sign = ascending ? 1 : -1;
        rows.sort(function (a, b) {
          var x = text(a), y = text(b);
          if (missing(x) || missing(y)) { return missing(x) - missing(y); }
          if (numeric) { return sign * (parseFloat(x) - parseFloat(y)); }
          return sign * x.localeCompare(y, undefined, {numeric: true});
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
"""


def _inline(text: str) -> str:
    # Code spans first and verbatim: formulas inside them hold "*".
    out = []
    for i, part in enumerate(re.split(r"`([^`]+)`", text)):
        part = html.escape(part, quote=False)
        if i % 2:
            out.append(f"<code>{part}</code>")
            continue
        part = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", part)
        out.append(re.sub(r"\*([^*\s][^*]*)\*", r"<em>\1</em>", part))
    return "".join(out)


def _text(block: str) -> str:
    """The markdown subset of `harness.report.document` as HTML."""
    out = []
    for para in re.split(r"\n\s*\n", block.strip()):
        lines = para.splitlines()
        if all(line.startswith("> ") or line == ">" for line in lines):
            quoted = "\n".join(line[2:] for line in lines)
            out.append(f"<blockquote>{_text(quoted)}</blockquote>")
        elif lines[0].startswith("- "):
            items, current = [], []
            for line in lines:  # continuation lines belong to the item above
                if line.startswith("- ") and current:
                    items.append(" ".join(current))
                    current = []
                current.append(line.removeprefix("- ").strip())
            items.append(" ".join(current))
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
        else:
            out.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "\n".join(out)


def _figure(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    caption = html.escape(plot.caption)
    return (f'<figure><img alt="{caption}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _cell(column: str, value: object) -> str:
    """A table cell; a verdict cell carries its verdict as a class (coloured by the style)."""
    text = str(value)
    if column == "verdict":
        kind = text.split(",")[0].strip().replace(" ", "-")
        return f'<td class="verdict {html.escape(kind)}">{html.escape(text)}</td>'
    return f"<td>{html.escape(text)}</td>"


def _table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.frame.columns)
    columns = [str(c) for c in table.frame.columns]
    rows = "\n".join("<tr>" + "".join(_cell(c, v) for c, v in zip(columns, row)) + "</tr>"
                     for row in table.frame.itertuples(index=False))
    return (f'<table class="sortable"><thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{rows}\n</tbody></table>")


def _block(block: Block) -> str:
    if isinstance(block, Plot):
        return _figure(block)
    if isinstance(block, Gallery):
        return '<div class="gallery">' + "\n".join(map(_figure, block.plots)) + "</div>"
    if isinstance(block, Table):
        return _table(block)
    return _text(block)


def to_html(title: str, intro: list[str], sections: list[Section]) -> str:
    """The whole report as one HTML page with a contents list."""
    contents = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>'
                       for s in sections)
    body = [f"<h1>{html.escape(title)}</h1>", *map(_text, intro),
            f"<nav><ul>{contents}</ul></nav>"]
    for section in sections:
        body.append(f'<h2 id="{section.anchor}">{html.escape(section.title)}</h2>')
        body += map(_block, section.blocks)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + f"\n<script>{SORT_SCRIPT}</script>\n</body></html>\n")
