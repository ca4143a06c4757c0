"""The report's renderers on a small hand-made report, without a study: the page comes from the
packaged template with every text escaped, and the Markdown and LaTeX files hold the same tables
in the same order (that the data module imports no renderer is in
``tests/e2e/test_fresh_interpreter.py``)."""

from __future__ import annotations

import re
from types import SimpleNamespace

from analysis.page import render_page
from analysis.render import latex, markdown, report_tables, write_report
from analysis.report_data import Report
from analysis.tables import ResultsTable, Row, Stat, TextTable


def _report(**changes) -> Report:
    results = ResultsTable(
        title="Errors (%)",
        rows=(Row("magnet", "Magnet <b>Loss</b>", {"error_simple": (Stat(1.25), Stat(2.0))}),),
        caption="Errors of the loss's best trial & its baselines",
    )
    retrieval = ResultsTable(title="Retrieval and clustering (%)", rows=())
    table = TextTable(
        title="Selected hyperparameters",
        header=("Loss", "embedding_dim"),
        rows=(("Magnet", "64"),),
    )
    fields = dict(
        study=SimpleNamespace(name="study <one>"),
        results=results,
        retrieval=retrieval,
        repeats=None,
        hyperparameters=table,
        trials=TextTable(title="Trials", header=("Loss", "Run"), rows=(("Magnet", "2"),)),
        settings=TextTable(title="Settings", header=("Setting", "Value"), rows=(("a", "b"),)),
        warnings=["<script>alert(1)</script> is text"],
        figure_notes=["no figures: --no-plots"],
    )
    fields.update(changes)
    return Report(**fields)


def test_the_page_escapes_every_text_and_links_every_section() -> None:
    page = render_page(_report(), folder=None)
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; is text" in page
    assert "<title>Results of study study &lt;one&gt;</title>" in page
    assert "<td>Magnet &lt;b&gt;Loss&lt;/b&gt;</td>" in page
    assert '<td class="number">1.2 (2.0)</td>' in page  # numbers never wrap
    assert "<th>embedding_<wbr>dim</th>" in page  # long field names may break
    assert "best trial &amp; its baselines</caption>" in page
    sections = re.findall(r'<section (?:class="warnings" )?id="([^"]+)"', page)
    assert sections == ["warnings", "results", "settings", "hyperparameters", "trials", "figures"]
    links = re.findall(r'<a href="#([^"]+)"', page)
    assert set(links) == set(re.findall(r' id="([^"]+)"', page))
    assert page.startswith("<!DOCTYPE html>\n") and page.endswith("</body></html>\n")


def test_a_report_without_warnings_or_figures_has_neither_section() -> None:
    page = render_page(_report(warnings=[], figure_notes=[], settings=None), folder=None)
    assert 'id="warnings"' not in page and 'id="figures"' not in page
    assert 'id="settings"' not in page


def test_markdown_and_latex_hold_the_same_tables(tmp_path) -> None:
    report = _report()
    titles = [table.title for table in report_tables(report)]
    assert titles == [
        "Errors (%)",
        "Retrieval and clustering (%)",
        "Settings",
        "Selected hyperparameters",
        "Trials",
    ]
    text = markdown(report)
    assert [line[4:] for line in text.splitlines() if line.startswith("### ")] == [
        *titles,
        "Figures not drawn",
    ]
    assert latex(report).count(r"\begin{table}") == len(titles) - 1  # not the settings
    written = write_report(report, tmp_path, formats="markdown")
    assert [path.name for path in written] == ["results.md", "report.html"]
    assert (tmp_path / "results.md").read_text(encoding="utf-8") == text
