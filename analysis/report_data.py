"""What the study report holds: plain data, gathered by :mod:`analysis.report_builder` before any
file is written, and read by the renderers (:mod:`analysis.render` for the table files,
:mod:`analysis.page` for the HTML page). Nothing here renders, and nothing here imports a renderer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analysis.plots import Picture
    from analysis.scores import Scores
    from analysis.tables import ResultsTable, TextTable
    from repmet.study_folder.trials import StudyFolder


@dataclass(frozen=True)
class Repeats:
    """The best configurations trained again with new seeds: the verdict and the mean ± sd tables
    of the errors and of the retrieval metrics, and every run's scores."""

    verdict: TextTable
    errors: ResultsTable
    retrieval: ResultsTable
    runs: Mapping[str, Sequence[Scores]] = field(default_factory=dict)
    seeds: str = ""

    @property
    def n(self) -> int:
        return max((len(scores) for scores in self.runs.values()), default=0)


@dataclass
class Report:
    """Everything the report writes, gathered before any file is written."""

    study: StudyFolder
    results: ResultsTable
    retrieval: ResultsTable
    repeats: Repeats | None
    hyperparameters: TextTable
    trials: TextTable
    settings: TextTable | None = None
    #: The unseen-class table of a class-disjoint study (None for a closed-set one).
    unseen: TextTable | None = None
    warnings: list[str] = field(default_factory=list)
    pictures: list[Picture] = field(default_factory=list)
    figure_notes: list[str] = field(default_factory=list)
    #: The errors against the learned centres of the losses that have them (the field's proxy
    #: losses); None when no loss of the study has any.
    centres: ResultsTable | None = None
