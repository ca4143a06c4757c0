"""The report page, ``report.html``: the warnings, a table of contents, the results with the loss
comparison, the repeats, the settings, the tables behind them and the figures, in sections that the
contents link to. A static page: no script, nothing fetched, each picture at its real size."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

from analysis import plots
from analysis.tables import TextTable, to_html

if TYPE_CHECKING:
    from analysis.report_builder import Report

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


def _figure_html(picture: plots.Picture, folder: Path | None, *, titled: bool = True) -> str:
    """A picture with its pixel size and caption; ``titled`` False leaves its title out of the
    caption (a heading above already says it)."""
    title = html.escape(picture.title)
    size = png_size(folder / picture.file) if folder is not None else None
    dimensions = f' width="{size[0]}" height="{size[1]}"' if size else ""
    caption = html.escape(picture.caption)
    if titled:
        caption = f"<b>{title}.</b> {caption}" if caption else title
    return (
        f'<figure id="{_anchor("figure-" + picture.file.removesuffix(".png"))}">'
        f'<img src="{html.escape(picture.file)}" alt="{title}"{dimensions}>'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def render_page(report: Report, folder: Path | None) -> str:
    """The whole page of a report whose pictures are in ``folder`` (their pixel sizes go into the
    page; None leaves them out)."""
    title = html.escape(f"Results of study {report.study.name}")
    sections: list[tuple[str, str, list[tuple[str, str]], str]] = []  # id, heading, subs, body

    def table_block(
        table: TextTable, key: str, css: str = "", heading: bool = True
    ) -> tuple[tuple[str, str], str]:
        block = to_html(table, anchor=key, heading=heading)
        if css:
            block = f'<div class="{css}">{block}</div>'
        return (key, table.title), block

    by_section: dict[str, list[plots.Picture]] = {}
    for picture in report.pictures:
        by_section.setdefault(picture.section, []).append(picture)

    subs, blocks = [], []
    if report.unseen is not None:
        entry, block = table_block(report.unseen, "unseen")
        subs.append(entry)
        blocks.append(block)
    entry, block = table_block(report.results.text(), "errors")
    subs.append(entry)
    blocks.append(block)
    for picture in by_section.get("comparison", []):
        subs.append(("comparison", picture.title))
        blocks.append(f'<h3 id="comparison">{html.escape(picture.title)}</h3>')
        blocks.append(_figure_html(picture, folder, titled=False))
    entry, block = table_block(report.retrieval.text(), "retrieval")
    subs.append(entry)
    blocks.append(block)
    if report.centres is not None:
        entry, block = table_block(report.centres.text(), "centres")
        subs.append(entry)
        blocks.append(block)
    sections.append(("results", "Results", subs, "\n".join(blocks)))

    if report.repeats is not None:
        subs, blocks = [], []
        for table, key in (
            (report.repeats.verdict, "verdict"),
            (report.repeats.errors.text(), "repeated-errors"),
            (report.repeats.retrieval.text(), "repeated-retrieval"),
        ):
            entry, block = table_block(table, key)
            subs.append(entry)
            blocks.append(block)
        sections.append(("repeats", "Repeats and verdict", subs, "\n".join(blocks)))

    if report.settings is not None:
        _, block = table_block(report.settings, "", css="settings", heading=False)
        sections.append(("settings", report.settings.title, [], block))
    for table, key in ((report.hyperparameters, "hyperparameters"), (report.trials, "trials")):
        _, block = table_block(table, "", heading=False)
        sections.append((key, table.title, [], block))

    subs, blocks = [], []
    for key, heading in plots.SECTIONS:
        figures = by_section.get(key, [])
        if not figures:
            continue
        subs.append((key, heading))
        blocks.append(f'<h3 id="{key}">{html.escape(heading)}</h3>')
        blocks += [_figure_html(picture, folder) for picture in figures]
    if report.figure_notes:
        subs.append(("figures-not-drawn", "Figures not drawn"))
        items = "".join(f"<li>{html.escape(note)}</li>" for note in report.figure_notes)
        blocks.append(f'<h3 id="figures-not-drawn">Figures not drawn</h3><ul>{items}</ul>')
    if blocks:
        sections.append(("figures", "Figures", subs, "\n".join(blocks)))

    body = [f"<h1>{title}</h1>"]
    if report.warnings:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in report.warnings)
        body.append(
            f'<section class="warnings" id="warnings"><h2>Read with care</h2><ul>{items}</ul>'
            "</section>"
        )
    contents = []
    for key, heading, subsections, _ in sections:
        inner = "".join(
            f'<li><a href="#{sub}">{html.escape(text)}</a></li>' for sub, text in subsections
        )
        inner = f"<ul>{inner}</ul>" if inner else ""
        contents.append(f'<li><a href="#{key}">{html.escape(heading)}</a>{inner}</li>')
    if report.warnings:
        contents.insert(0, '<li><a href="#warnings">Read with care</a></li>')
    body.append(f'<nav class="contents"><h2>Contents</h2><ul>{"".join(contents)}</ul></nav>')
    for key, heading, _, block in sections:
        body.append(f'<section id="{key}"><h2>{html.escape(heading)}</h2>\n{block}</section>')
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{PAGE_STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
