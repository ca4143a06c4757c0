"""The report page, ``report.html``: the warnings, a table of contents, the results with the loss
comparison, the repeats, the settings, the tables behind them and the figures, in sections that the
contents link to. A static page: no script, nothing fetched, each picture at its real size.

This module decides what the page shows and in which section; ``templates/report.html.j2`` (a
jinja2 template, autoescaped) holds the markup."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from analysis import plots
from analysis.report_data import Report
from analysis.tables import TextTable

PAGE_STYLE = (
    "body{font-family:sans-serif;margin:2em auto;max-width:1200px;padding:0 1.5em;"
    "line-height:1.4;color:#222}"
    "h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}"
    "table{border-collapse:collapse;margin:.5em 0;font-size:.92em}"
    "td,th{border:1px solid #bbb;padding:.2em .45em;text-align:center}"
    "td:first-child{text-align:left}"
    "caption{caption-side:top;text-align:left;padding:.3em 0}"
    ".scroll{overflow-x:auto;max-width:100%}"
    # A figure is as wide as its image, and its caption wraps within that width.
    "figure{display:inline-table;vertical-align:top;margin:.6em .4em}"
    "figure img{max-width:100%;height:auto;display:block}"
    "figcaption{display:table-caption;caption-side:bottom;font-size:small;color:#444;"
    "padding:.3em 0 .6em}"
    "td.number{white-space:nowrap}"
    ".note{font-size:small;color:#444}"
    ".warnings{border:2px solid #c62828;background:#fff3f0;padding:.6em 1.2em;margin:1em 0}"
    ".warnings h2{border:none;margin:.2em 0;color:#b71c1c;font-size:1.2em}"
    ".warnings li{margin:.3em 0}"
    "nav.contents{background:#f6f6f6;padding:.5em 1.2em;margin:1em 0;display:inline-block}"
    "nav.contents h2{border:none;margin:.2em 0;font-size:1.1em}"
    "nav.contents ul{margin:.2em 0;padding-left:1.3em}"
    ".settings td:last-child{text-align:left}"
)


def _anchor(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def png_size(path: Path) -> tuple[int, int] | None:
    """Width and height of a PNG from its header, or None if it is not a readable PNG."""
    try:
        with path.open("rb") as stream:
            header = stream.read(24)
    except OSError:
        return None
    if len(header) < 24 or header[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


#: A cell of numbers (``1.1 (2.2)``, ``0.5 ± 0.1``, ``[0.00, 2.61]``): it never wraps.
_NUMBER_CELL = re.compile(r"^[-+\d.,%±()\[\] ]+$")


def _breakable(text: str) -> Markup:
    """A header cell whose long field names may break after their underscores."""
    return Markup("_<wbr>").join(text.split("_"))


@cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("analysis", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["breakable"] = _breakable
    environment.tests["number_cell"] = lambda cell: bool(_NUMBER_CELL.match(cell))
    return environment.get_template("report.html.j2")


@dataclass(frozen=True)
class Figure:
    """A picture as the page shows it: ``titled`` False leaves its title out of the caption (a
    heading above already says it); ``size`` is its pixel size, None when unknown."""

    id: str
    file: str
    title: str
    caption: str
    size: tuple[int, int] | None
    titled: bool = True


@dataclass(frozen=True)
class Section:
    """A section of the page: its id and heading, its entries in the contents (id, text) and its
    blocks, each a dict with a ``kind`` (``table``, ``heading``, ``figure`` or ``notes``)."""

    id: str
    heading: str
    contents: Sequence[tuple[str, str]]
    blocks: Sequence[dict[str, Any]]


def _figure(picture: plots.Picture, folder: Path | None, *, titled: bool = True) -> dict:
    size = png_size(folder / picture.file) if folder is not None else None
    figure = Figure(
        id=_anchor("figure-" + picture.file.removesuffix(".png")),
        file=picture.file,
        title=picture.title,
        caption=picture.caption,
        size=size,
        titled=titled,
    )
    return {"kind": "figure", "figure": figure}


def _table(table: TextTable, anchor: str = "", *, css: str = "", heading: bool = True) -> dict:
    return {"kind": "table", "table": table, "anchor": anchor, "css": css, "heading": heading}


def page_sections(report: Report, folder: Path | None) -> list[Section]:
    """The page's sections in order: the results, the repeats, the settings, the selected
    hyperparameters, the trials and the figures (those that have something to show)."""
    by_section: dict[str, list[plots.Picture]] = {}
    for picture in report.pictures:
        by_section.setdefault(picture.section, []).append(picture)

    tables: list[tuple[TextTable, str]] = []
    if report.unseen is not None:
        tables.append((report.unseen, "unseen"))
    tables.append((report.results.text(), "errors"))
    contents = [(key, table.title) for table, key in tables]
    blocks = [_table(table, key) for table, key in tables]
    for picture in by_section.get("comparison", []):
        contents.append(("comparison", picture.title))
        blocks.append({"kind": "heading", "anchor": "comparison", "text": picture.title})
        blocks.append(_figure(picture, folder, titled=False))
    tables = [(report.retrieval.text(), "retrieval")]
    if report.centres is not None:
        tables.append((report.centres.text(), "centres"))
    contents += [(key, table.title) for table, key in tables]
    blocks += [_table(table, key) for table, key in tables]
    sections = [Section("results", "Results", contents, blocks)]

    if report.repeats is not None:
        tables = [
            (report.repeats.verdict, "verdict"),
            (report.repeats.errors.text(), "repeated-errors"),
            (report.repeats.retrieval.text(), "repeated-retrieval"),
        ]
        sections.append(
            Section(
                "repeats",
                "Repeats and verdict",
                [(key, table.title) for table, key in tables],
                [_table(table, key) for table, key in tables],
            )
        )

    if report.settings is not None:
        block = _table(report.settings, css="settings", heading=False)
        sections.append(Section("settings", report.settings.title, [], [block]))
    for table, key in ((report.hyperparameters, "hyperparameters"), (report.trials, "trials")):
        sections.append(Section(key, table.title, [], [_table(table, heading=False)]))

    contents, blocks = [], []
    for key, heading in plots.SECTIONS:
        figures = by_section.get(key, [])
        if not figures:
            continue
        contents.append((key, heading))
        blocks.append({"kind": "heading", "anchor": key, "text": heading})
        blocks += [_figure(picture, folder) for picture in figures]
    if report.figure_notes:
        contents.append(("figures-not-drawn", "Figures not drawn"))
        blocks.append(
            {
                "kind": "notes",
                "anchor": "figures-not-drawn",
                "text": "Figures not drawn",
                "lines": report.figure_notes,
            }
        )
    if blocks:
        sections.append(Section("figures", "Figures", contents, blocks))
    return sections


def render_page(report: Report, folder: Path | None) -> str:
    """The whole page of a report whose pictures are in ``folder`` (their pixel sizes go into the
    page; None leaves them out)."""
    return _template().render(
        title=f"Results of study {report.study.name}",
        style=Markup(PAGE_STYLE),
        warnings=report.warnings,
        sections=page_sections(report, folder),
    )
