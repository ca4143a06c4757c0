"""What a study searched for a loss: one rule, for the study's console, ``trials.csv`` and the
report.

The manifest's baseline point of the loss is the record: it holds exactly the parameters the
loss's define-by-run function sampled (``search_spaces.SearchSpace.baseline`` runs it on a fixed
trial), so it also holds for a plugin loss that the reading process has not registered. A loss
without a baseline point falls back on its catalogue entry, and an unknown one on nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from repmet.catalogue import LOSSES
from repmet.study_folder.manifest import StudySettings


def searched_parameters(settings: StudySettings, loss: str) -> tuple[str, ...]:
    """The parameters the study searched for ``loss``, in the order the search samples them."""
    point = settings.baseline.get(loss)
    if point:
        return tuple(point)
    return tuple(LOSSES.get(loss).searched) if loss in LOSSES else ()


def searched_by_any(settings: StudySettings, losses: Sequence[str]) -> list[str]:
    """The parameters the study searched for any of ``losses``, in order of first appearance."""
    names: dict[str, None] = {}
    for loss in losses:
        names.update(dict.fromkeys(searched_parameters(settings, loss)))
    return list(names)
