"""A tiny document model rendered to Markdown (images as relative links) and to self-contained HTML (images as
base64 PNG, inline CSS, no external resource)."""

from __future__ import annotations

import base64
import html
import math
import os
from dataclasses import dataclass, field

NOT_AVAILABLE = "n/a"


def format_number(x) -> str:
    """One format for every number of a report: integers as integers, others to 4 significant digits
    (as `vidkv run` prints its summary), missing values as 'n/a'."""
    if x is None:
        return NOT_AVAILABLE
    if isinstance(x, str):
        return x
    x = float(x)
    if math.isnan(x):
        return NOT_AVAILABLE
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    return f"{x:.4g}"


@dataclass
class Heading:
    text: str
    level: int = 2
    anchor: str = ""


@dataclass
class Paragraph:
    text: str
    css: str = ""


@dataclass
class KeyValues:
    items: list  # [(key, value)]


@dataclass
class Table:
    header: list
    rows: list  # list of lists of cells (str or number)


@dataclass
class Image:
    path: str
    title: str
    caption: str = ""


@dataclass
class Code:
    text: str
    summary: str = ""


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, block):
        self.blocks.append(block)
        return block


def _md_cell(c) -> str:
    return format_number(c).replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document, base_dir: str) -> str:
    out = [f"# {doc.title}", ""]
    for b in doc.blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Paragraph):
            out += [b.text, ""]
        elif isinstance(b, KeyValues):
            out += [f"- **{k}**: {format_number(v)}" for k, v in b.items] + [""]
        elif isinstance(b, Table):
            out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
            out.append("| " + " | ".join("---" for _ in b.header) + " |")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif isinstance(b, Image):
            rel = os.path.relpath(b.path, base_dir).replace(os.sep, "/")
            out += [f"![{b.title}]({rel})", ""]
            if b.caption:
                out += [f"*{b.caption}*", ""]
        elif isinstance(b, Code):
            out += ["<details><summary>" + html.escape(b.summary or "details") + "</summary>", "",
                    "```", b.text.rstrip("\n"), "```", "", "</details>", ""]
    return "\n".join(out).rstrip("\n") + "\n"


CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1100px;
       color: #1d2433; line-height: 1.45; padding: 0 16px; }
h1 { font-size: 1.7em; border-bottom: 2px solid #d1495b; padding-bottom: 4px; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #ccd; padding-bottom: 2px; }
h3 { font-size: 1.05em; margin-top: 1.3em; }
div.table-wrap { overflow-x: auto; margin: 8px 0 16px; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccd3dd; padding: 3px 8px; }
th { background: #eef1f6; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; font-family: Menlo, Consolas, monospace; }
tr:nth-child(even) td { background: #f8f9fb; }
ul.kv { font-size: 0.85em; padding-left: 18px; }
ul.kv li { margin: 1px 0; }
figure { margin: 10px 0 22px; }
figure img { max-width: 100%; border: 1px solid #e2e6ee; }
figcaption { font-size: 0.85em; color: #4a5466; margin-top: 4px; }
p.note { font-size: 0.9em; color: #7a4b00; background: #fff6e0; padding: 4px 8px; border-left: 3px solid #f1a208; }
p.caption { font-size: 0.95em; color: #334; font-style: italic; }
pre { font-size: 0.8em; background: #f4f6f9; padding: 8px; overflow-x: auto; }
nav ul { font-size: 0.9em; }
"""


def _html_text(text: str) -> str:
    """Escapes text and renders the only inline Markdown the report uses: `code`."""
    parts = html.escape(text).split("`")
    return "".join(p if i % 2 == 0 else f"<code>{p}</code>" for i, p in enumerate(parts))


def _is_numeric_cell(c) -> bool:
    return not isinstance(c, str) or c == NOT_AVAILABLE


def to_html(doc: Document) -> str:
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>{html.escape(doc.title)}</title>", f"<style>{CSS}</style>", "</head><body>",
           f"<h1>{html.escape(doc.title)}</h1>"]
    for b in doc.blocks:
        if isinstance(b, Heading):
            anchor = f' id="{html.escape(b.anchor)}"' if b.anchor else ""
            out.append(f"<h{b.level}{anchor}>{_html_text(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            css = f' class="{b.css}"' if b.css else ""
            out.append(f"<p{css}>{_html_text(b.text)}</p>")
        elif isinstance(b, KeyValues):
            out.append("<ul class=\"kv\">" + "".join(
                f"<li><b>{html.escape(str(k))}</b>: {html.escape(format_number(v))}</li>" for k, v in b.items)
                + "</ul>")
        elif isinstance(b, Table):
            # <wbr> after underscores lets long metric names wrap, so wide tables fit the page.
            out.append("<div class=\"table-wrap\"><table><thead><tr>" + "".join(
                f"<th>{html.escape(str(h)).replace('_', '_<wbr>')}</th>" for h in b.header) + "</tr></thead><tbody>")
            for row in b.rows:
                cells = []
                for c in row:
                    css = ' class="num"' if _is_numeric_cell(c) else ""
                    cells.append(f"<td{css}>{html.escape(format_number(c))}</td>")
                out.append("<tr>" + "".join(cells) + "</tr>")
            out.append("</tbody></table></div>")
        elif isinstance(b, Image):
            with open(b.path, "rb") as f:
                data = base64.b64encode(f.read()).decode("ascii")
            out.append(f"<figure><img alt=\"{html.escape(b.title)}\" src=\"data:image/png;base64,{data}\">"
                       + (f"<figcaption>{_html_text(b.caption)}</figcaption>" if b.caption else "")
                       + "</figure>")
        elif isinstance(b, Code):
            out.append(f"<details><summary>{html.escape(b.summary or 'details')}</summary>"
                       f"<pre>{html.escape(b.text)}</pre></details>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
