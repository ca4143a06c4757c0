"""The report's files, rendered from its data (:class:`analysis.report_data.Report`): Markdown,
LaTeX and CSV tables, and the HTML page (:mod:`analysis.page`)."""

from __future__ import annotations

from pathlib import Path

from analysis.page import render_page
from analysis.report_data import Report
from analysis.tables import TextTable, to_latex, to_markdown


def report_tables(report: Report) -> list[TextTable]:
    """The report's tables in the order the Markdown and LaTeX files show them."""
    tables = [] if report.unseen is None else [report.unseen]
    tables += [report.results.text(), report.retrieval.text()]
    if report.centres is not None:
        tables.append(report.centres.text())
    if report.repeats is not None:
        tables += [
            report.repeats.verdict,
            report.repeats.errors.text(),
            report.repeats.retrieval.text(),
        ]
    if report.settings is not None:
        tables.append(report.settings)
    return [*tables, report.hyperparameters, report.trials]


def markdown(report: Report) -> str:
    """``results.md`` (and what the command prints): the warnings, every table, the figures that
    were not drawn."""
    parts = [f"# Results of study {report.study.name}\n"]
    if report.warnings:
        parts.append(
            "\n".join(f"> **Warning.** {line}  " for line in report.warnings).rstrip() + "\n"
        )
    parts += [to_markdown(table) for table in report_tables(report)]
    if report.figure_notes:
        parts.append("### Figures not drawn\n\n" + "\n".join(f"- {n}" for n in report.figure_notes))
    return "\n".join(parts) + "\n"


def latex(report: Report) -> str:
    """``results.tex``: every table but the settings, which are sentences, not numbers (a paper
    states them in its text)."""
    return "\n".join(
        to_latex(table) for table in report_tables(report) if table is not report.settings
    )


def write_report(report: Report, folder: Path, *, formats: str) -> list[Path]:
    """Writes the selected table files and the HTML page into ``folder`` (which holds the
    pictures); returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    if formats in ("markdown", "all"):
        files["results.md"] = markdown(report)
    if formats in ("csv", "all"):
        files["results.csv"] = report.results.csv()
        files["retrieval.csv"] = report.retrieval.csv()
        if report.centres is not None:
            files["results_centres.csv"] = report.centres.csv()
        if report.repeats is not None:
            files["results_repeats.csv"] = report.repeats.errors.csv()
            files["retrieval_repeats.csv"] = report.repeats.retrieval.csv()
    if formats in ("latex", "all"):
        files["results.tex"] = latex(report)
    files["report.html"] = render_page(report, folder)
    written = []
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
        written.append(folder / name)
    return written
