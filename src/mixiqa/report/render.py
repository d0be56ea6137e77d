"""A report as data (sections of text, tables and figures), rendered to HTML and markdown.

Plain f-strings, no template engine: every piece of text goes through ``html.escape``
(markdown cells have their pipes escaped), and images are referenced relatively
(``plots/NAME.png``) so the report folder can be moved or zipped as a whole.
"""

from __future__ import annotations

import html
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: .8em 0 1.4em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: .3em .7em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: .3em; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.92em; margin-top: .3em; }
.note { color: #8a5a00; }
.meta { color: #666; font-size: 0.9em; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2em 1.2em; }
dt { font-weight: 600; }
dd { margin: 0; }
"""


@dataclass
class Table:
    """A table of already formatted cells; the first column is the row label."""

    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Plot:
    """A figure: its file relative to the report folder, and what it shows."""

    file: str
    caption: str


@dataclass
class Section:
    """One heading with, in this order: facts, paragraphs, tables, figures and notes."""

    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def fmt(value: Any, digits: int = 3) -> str:
    """A metric for a table cell: fixed decimals, "-" where missing or nan."""
    if value is None or isinstance(value, str):
        return "-" if value in (None, "") else value
    value = float(value)
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def slug(text: str) -> str:
    """A safe file-name part: letters, digits, ``-`` and ``_`` only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-") or "x"


def write_atomic(path: Path, text: str) -> Path:
    """Write a text file via a temporary file and a rename, so readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------- HTML


def _html_table(t: Table) -> str:
    e = html.escape
    cap = f"<caption>{e(t.caption)}</caption>" if t.caption else ""
    head = "".join(f"<th>{e(c)}</th>" for c in t.header)
    body = "\n".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>"
                     for row in t.rows)
    return f"<table>{cap}\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>"


def _html_section(s: Section) -> str:
    e = html.escape
    parts = [f"<h2>{e(s.title)}</h2>"]
    if s.facts:
        parts.append("<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in s.facts)
                     + "</dl>")
    parts += [f"<p>{e(p)}</p>" for p in s.text]
    parts += [_html_table(t) for t in s.tables]
    parts += [f'<figure><img src="{e(p.file)}" alt="{e(p.caption)}">'
              f"<figcaption>{e(p.caption)}</figcaption></figure>" for p in s.plots]
    parts += [f'<p class="note">{e(n)}</p>' for n in s.notes]
    return "\n".join(parts)


def render_html(title: str, subtitle: str, sections: list[Section]) -> str:
    """The whole page: inline CSS, then each section."""
    e = html.escape
    body = "\n\n".join(_html_section(s) for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f'<h1>{e(title)}</h1>\n<p class="meta">{e(subtitle)}</p>\n{body}\n</body>\n</html>\n')


# ------------------------------------------------------------------------ markdown


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_alt(text: str) -> str:
    return _md_cell(text).replace("[", "\\[").replace("]", "\\]")  # brackets end alt text


def _md_table(t: Table) -> str:
    lines = [f"**{_md_cell(t.caption)}**", ""] if t.caption else []
    lines.append("| " + " | ".join(_md_cell(c) for c in t.header) + " |")
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(t.header) - 1)) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def _md_section(s: Section) -> str:
    parts = [f"## {s.title}"]
    if s.facts:
        parts.append("\n".join(f"- **{_md_cell(k)}**: {_md_cell(v)}" for k, v in s.facts))
    parts += s.text
    parts += [_md_table(t) for t in s.tables]
    parts += [f"![{_md_alt(p.caption)}]({p.file})\n\n*{_md_cell(p.caption)}*" for p in s.plots]
    parts += [f"> {n}" for n in s.notes]
    return "\n\n".join(parts)


def render_markdown(title: str, subtitle: str, sections: list[Section]) -> str:
    """The same report as markdown: tables as pipe tables, figures as image links."""
    body = "\n\n".join(_md_section(s) for s in sections)
    return f"# {title}\n\n{subtitle}\n\n{body}\n"
