"""Markdown -> HTML for the reports: one converter for the corpus report and the eval report.

The reports write a small Markdown subset, and this module turns exactly that subset into HTML:
`#` headings, pipe tables (the first row is the header, the `|---|` rule is dropped), `- ` bullets,
fenced code blocks, `![alt](src)` images on their own line, paragraphs, and `**bold**` / `` `code` ``
inside a line. Anything else is kept as an escaped paragraph, never dropped.

Example:
    html_page("Corpus report", markdown_to_html("| a | b |\\n|---|---|\\n| 1 | 2 |"))
"""

from __future__ import annotations

import html
import re

STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:2px 6px}pre{background:#f6f6f6;padding:6px;overflow:auto}")
NUMERIC_STYLE = "td,th{text-align:right}td:first-child{text-align:left}"  # tables of numbers (eval)


def inline(text: str) -> str:
    """One line's text, escaped, with `**bold**` and `` `code` `` marked up."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _table(rows: list[list[str]]) -> str:
    head, *body = rows
    return ("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in body)
            + "</table>")


def _line(line: str) -> str:
    """One non-table, non-code line as HTML ("" for a blank line)."""
    if re.fullmatch(r"!\[[^\]]*\]\([^)]*\)", line.strip()):
        src = line[line.index("(") + 1: line.rindex(")")]
        return f"<p><img src='{html.escape(src)}' style='max-width:100%'></p>"
    if line.startswith("#"):
        level = min(len(line) - len(line.lstrip("#")), 6)
        return f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>"
    if line.startswith("- "):
        return f"<li>{inline(line[2:])}</li>"
    return f"<p>{inline(line)}</p>" if line.strip() else ""


def markdown_to_html(text: str) -> str:
    """The report Markdown subset (see the module docstring) as an HTML fragment."""
    out: list[str] = []
    table: list[list[str]] = []  # rows of cells of the table being read
    code: list[str] | None = None  # lines of the open code block
    fence_indent = 0  # a fence nested in a list item is indented; its lines lose that indent
    for line in text.splitlines() + [""]:
        if code is not None:
            if line.strip() == "```":
                out.append("<pre>" + html.escape("\n".join(code)) + "</pre>")
                code = None
            else:
                code.append(line[min(fence_indent, len(line) - len(line.lstrip(" "))):])
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                table.append(cells)
            continue
        if table:
            out.append(_table(table))
            table = []
        if line.strip() == "```":
            code, fence_indent = [], len(line) - len(line.lstrip(" "))
        elif converted := _line(line):
            out.append(converted)
    return "\n".join(out)


def html_page(title: str, body: str, *, style: str = STYLE) -> str:
    """A whole HTML document around an HTML fragment."""
    return (f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>\n"
            f"<style>{style}</style>\n{body}\n")
