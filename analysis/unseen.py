"""The unseen-class table of a class-disjoint study: how each loss's embedding does on test
classes the network never saw ("A Metric Learning Reality Check", Musgrave et al., ECCV 2020;
RepMet's few-shot episodes, Karlinsky et al., CVPR 2019).

One row per loss and baseline: the few-shot accuracies of every rule and shot count with their 95%
intervals over episodes, the retrieval and clustering metrics and the unsupervised error of the
unseen test classes, and, beside them, the closed-set simple error on the training classes. Every
column derives from the metric catalogue (:mod:`repmet.metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from analysis.tables import MISSING, TextTable
from repmet.formatting import format_percent
from repmet.metrics import Metric, metric, metrics_for, metrics_of

#: The closed-set column: the simple error on the training classes (train split).
CLOSED_SET_COLUMN = "error_simple"


@dataclass(frozen=True)
class UnseenRow:
    """What one loss or baseline measured: ``{split: {name: value}}`` and the intervals of the
    test split's few-shot accuracies, all in [0, 1]."""

    key: str
    label: str
    metrics: Mapping[str, Mapping[str, float]]
    intervals: Mapping[str, float]


def unseen_columns() -> list[Metric]:
    """The test split's columns: few-shot accuracies first, then the other unseen-class
    metrics (retrieval, clustering, unsupervised error)."""
    few_shot = metrics_of("few-shot")
    return few_shot + [m for m in metrics_for(seen=False) if m not in few_shot]


def _cell(value: float | None, interval: float | None) -> str:
    if value is None:
        return MISSING
    return format_percent(100.0 * value, None if interval is None else 100.0 * interval)


def unseen_table(rows: Sequence[UnseenRow], *, ways: int, queries: int, episodes: int) -> TextTable:
    """The table of :class:`UnseenRow` s (values in percent)."""
    columns = unseen_columns()
    closed = metric(CLOSED_SET_COLUMN)
    header = ("Loss", *(m.header for m in columns), f"{closed.header} (train classes)")
    body = tuple(
        (
            row.label,
            *(
                _cell(row.metrics.get("test", {}).get(m.name), row.intervals.get(m.name))
                for m in columns
            ),
            _cell(row.metrics.get("train", {}).get(closed.name), None),
        )
        for row in rows
    )
    return TextTable(
        title="Unseen classes (%)",
        header=header,
        rows=body,
        caption=(
            f"On the test classes, which no network saw in training: {ways}-way few-shot "
            f"accuracy over {episodes:,} episodes of {queries} queries per class, the same "
            "episodes for every row (mean ± the 95% interval half-width over episodes; "
            "representatives formed from each episode's support only, queries classified by "
            "the simple, Magnet eq. 6 and RepMet eq. 6 rules); retrieval and clustering metrics "
            "of the test split retrieving from itself and its unsupervised error; and the "
            "closed-set simple error on the training classes. Higher is better except for "
            "errors."
        ),
        notes=(
            "Raw pixels: the simple rule (prototypes of raw pixels) and retrieval only; "
            "the Magnet and RepMet rules need a variance of a learned embedding.",
        ),
    )
