"""The results table and its renderings: Markdown, CSV and LaTeX (the report page draws the same
tables in HTML, from ``templates/report.html.j2``).

A :class:`ResultsTable` holds numbers (errors in percent, optionally mean and standard deviation);
:class:`TextTable` is what every text format draws, so that the three text renderers share one
layout and differ only in syntax.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from repmet.catalogue import FAMILY_HEADINGS, LOSSES
from repmet.formatting import format_percent
from repmet.metrics import Table, metrics_of

SPLIT_HEADER = "Train (Test)"
MISSING = "-"


def columns_of(table: Table) -> dict[str, str]:
    """The columns of a report table: metric name -> header, in catalogue order."""
    return {m.name: m.header for m in metrics_of(table)}


def loss_label(loss: str) -> str:
    """The loss's row label from its catalogue entry (its name if it is not catalogued here)."""
    return LOSSES.get(loss).label if loss in LOSSES else loss


def loss_family(loss: str) -> str | None:
    """The family (``repmet.catalogue.Family``) whose rows the loss's row joins; None for a loss
    not catalogued here."""
    return LOSSES.get(loss).family if loss in LOSSES else None


def by_family(losses: Sequence[str]) -> list[str]:
    """The losses with the seed's family first, the field's next, each in its given order."""
    order = list(FAMILY_HEADINGS)
    return sorted(losses, key=lambda loss: order.index(loss_family(loss) or order[0]))


#: The heading of the rows that belong to no loss family (the untrained network, raw-pixel 1-NN).
BASELINES_HEADING = "Baselines"


@dataclass(frozen=True)
class Stat:
    """An error in percent: one measurement, or the mean and standard deviation of repeats."""

    mean: float
    std: float | None = None

    def __str__(self) -> str:
        return format_percent(self.mean, self.std)


#: (train, test) per accuracy type; None where the row has no such number.
SplitStats = tuple[Stat | None, Stat | None]


@dataclass(frozen=True)
class Row:
    key: str  # loss name or baseline id, the CSV's first column
    label: str
    values: Mapping[str, SplitStats]  # by column key
    family: str | None = None  # the loss's family; None for a baseline row

    def cell(self, kind: str) -> str:
        train, test = self.values.get(kind, (None, None))
        if train is None and test is None:
            return MISSING
        return (
            f"{train if train is not None else MISSING} ({test if test is not None else MISSING})"
        )


@dataclass(frozen=True)
class TextTable:
    """A table of strings: one header row, an optional second header row, body rows, a caption
    above and notes below."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    subheader: tuple[str, ...] | None = None
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ResultsTable:
    """Numbers in percent per loss (and baselines), as Train (Test) for each column: the metrics
    of one table of :mod:`repmet.metrics` (the errors by default), keyed by metric name."""

    title: str
    rows: tuple[Row, ...]
    caption: str = ""
    notes: tuple[str, ...] = field(default=())
    columns: Mapping[str, str] = field(default_factory=lambda: columns_of("error"))

    def text(self) -> TextTable:
        """The table as text; when it holds losses of more than one family, each family's rows
        (and the baselines) come under a heading row of their own."""
        grouped = len({row.family for row in self.rows if row.family is not None}) > 1
        rows: list[tuple[str, ...]] = []
        for index, row in enumerate(self.rows):
            if grouped and (index == 0 or row.family != self.rows[index - 1].family):
                heading = FAMILY_HEADINGS.get(row.family or "", BASELINES_HEADING)
                rows.append((heading, *("" for _ in self.columns)))
            rows.append((row.label, *(row.cell(k) for k in self.columns)))
        return TextTable(
            title=self.title,
            header=("Loss", *self.columns.values()),
            subheader=("", *(SPLIT_HEADER for _ in self.columns)),
            rows=tuple(rows),
            caption=self.caption,
            notes=self.notes,
        )

    def csv(self) -> str:
        """One row per table row, one numeric column per (type, split), plus ``_std`` columns
        when the table holds repeats; missing numbers are empty."""
        with_std = any(
            stat is not None and stat.std is not None
            for row in self.rows
            for pair in row.values.values()
            for stat in pair
        )
        columns = [f"{kind}_{split}" for kind in self.columns for split in ("train", "test")]
        header = ["loss", "label"]
        for column in columns:
            header += [column, f"{column}_std"] if with_std else [column]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        for row in self.rows:
            values: list[str] = [row.key, row.label]
            for kind in self.columns:
                for stat in row.values.get(kind, (None, None)):
                    values.append(f"{stat.mean:.4f}" if stat is not None else "")
                    if with_std:
                        std = stat.std if stat is not None else None
                        values.append(f"{std:.4f}" if std is not None else "")
            writer.writerow(values)
        return buffer.getvalue()


# ------------------------------------------------------------------------------------ renderers


def to_markdown(table: TextTable) -> str:
    """GitHub Markdown. A Markdown table has one header row, so the second header row (Train
    (Test)) becomes the first body row."""
    lines = [f"### {table.title}", ""]
    if table.caption:
        lines += [table.caption, ""]
    lines.append(_markdown_row(table.header))
    lines.append("|" + "|".join("---" for _ in table.header) + "|")
    if table.subheader is not None:
        lines.append(_markdown_row(table.subheader))
    lines += [_markdown_row(row) for row in table.rows]
    if table.notes:
        lines.append("")
        lines += [f"{note}  " for note in table.notes]
    return "\n".join(lines) + "\n"


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(char, char) for char in text)


def to_latex(table: TextTable) -> str:
    """A ``table`` float with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""
    columns = "l" + "c" * (len(table.header) - 1)
    lines = [r"\begin{table}[t]", r"\centering"]
    if table.caption or table.title:
        lines.append(r"\caption{" + latex_escape(table.caption or table.title) + "}")
    lines += [r"\begin{tabular}{" + columns + "}", r"\toprule"]
    lines.append(_latex_row(table.header))
    if table.subheader is not None:
        lines.append(_latex_row(table.subheader))
    lines.append(r"\midrule")
    lines += [_latex_row(row) for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    for note in table.notes:
        lines.append(r"\par\smallskip{\footnotesize " + latex_escape(note) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _latex_row(cells: Sequence[str]) -> str:
    return " & ".join(latex_escape(cell) for cell in cells) + r" \\"
