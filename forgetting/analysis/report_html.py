"""The pieces of a self-contained HTML page: escaping, sections, tables (sortable by a click on a
column's header, by a few lines of inline script), figures embedded as base64 PNG. Nothing is
fetched: no external style sheet, script, font or image, so the page opens offline and can be
mailed as one file.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1a1a1a; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
pre, code { font: 12px/1.4 ui-monospace, monospace; background: #f4f4f4; }
pre { padding: .6em; overflow-x: auto; }
table { border-collapse: collapse; font-size: 12px; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #eee; position: sticky; top: 0; }
table.sortable th { cursor: pointer; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
td.text { text-align: left; }
.wide { overflow: auto; max-height: 32em; }
.ok { color: #116611; } .fails { color: #aa1111; }
.verdict { font-size: 1.25em; font-weight: bold; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #444; }
"""

# click a header: sort that table's body by the column (numbers as numbers, text as text,
# empty cells last either way), again: reversed. Each table numbers its own columns.
SCRIPT = """
function sortValue(cell) {
  var t = cell.innerText.trim();
  if (t === "") return null;
  var m = /^[-+]?(\\d+\\.?\\d*|\\.\\d+)(e[-+]?\\d+)?\\*?$/i.exec(t);
  if (m) return parseFloat(t);
  if (/^[-+]?inf$/i.test(t)) return t[0] === "-" ? -Infinity : Infinity;
  return t;
}
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = Array.from(table.tHead.rows[0].cells);
  heads.forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0];
      var up = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      var rows = Array.from(body.rows).map(function (r) {
        return [sortValue(r.cells[col]), r]; });
      rows.sort(function (a, b) {
        var x = a[0], y = b[0];
        if (x === null || y === null) return (x === null) - (y === null);
        var c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0)
                                        : (typeof x === "number" ? -1 : 1);
        return up ? c : -c; });
      rows.forEach(function (pair) { body.appendChild(pair[1]); });
    });
  });
});
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + f"\n<script>{SCRIPT}</script>\n</body></html>\n")


def section(title: str, anchor: str, parts: list[str]) -> str:
    return f"<section id=\"{esc(anchor)}\"><h2>{esc(title)}</h2>\n" + "\n".join(parts) + \
        "</section>"


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def para(text: str, cls: str = "") -> str:
    return f"<p class=\"{cls}\">{esc(text)}</p>" if cls else f"<p>{esc(text)}</p>"


def cell(value) -> str:
    """A table cell: numbers right-aligned (4 significant digits), text left-aligned."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<td></td>"
    if isinstance(value, bool):
        return f"<td class=\"text\">{esc(value)}</td>"
    if isinstance(value, float):
        return f"<td>{value:.4g}</td>"
    if isinstance(value, int):
        return f"<td>{value}</td>"
    return f"<td class=\"text\">{esc(value)}</td>"


def table(columns: list[str], rows, links: dict | None = None, sortable: bool = True) -> str:
    """An HTML table of `rows` (sequences in the order of `columns`); `links`: column ->
    function of the cell's value giving a relative URL (the cell becomes a link)."""
    links = links or {}
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column, value in zip(columns, row):
            if column in links and value is not None:
                cells.append(f"<td class=\"text\"><a href=\"{esc(links[column](value))}\">"
                             f"{esc(value)}</a></td>")
            else:
                cells.append(cell(value.item() if hasattr(value, "item") else value))
        body.append("<tr>" + "".join(cells) + "</tr>")
    cls = " class=\"sortable\"" if sortable else ""
    return (f"<div class=\"wide\"><table{cls}><thead><tr>{head}</tr></thead><tbody>\n"
            + "\n".join(body) + "\n</tbody></table></div>")


def image(path: Path, alt: str) -> str:
    """A PNG embedded as a data URI, with its alt text also as the caption."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{esc(alt)}\">"
            f"<figcaption>{esc(path.name)}: {esc(alt)}</figcaption></figure>")
