"""The named search spaces (``--space``). What each loss searches comes from its catalogue entry
(:mod:`repmet.catalogue`); a space only groups losses and sets their common trial budget."""

from __future__ import annotations

from search_spaces.base import SEARCH_SPACES, SearchSpace

#: Trials per loss: the repmet study (4 losses) still ends in minutes on 2 cores.
NUM_SAMPLES = 16

for _space in (
    SearchSpace(
        name="magnet",
        description="Magnet loss",
        covers=("magnet",),
        num_samples=NUM_SAMPLES,
    ),
    SearchSpace(
        name="repmet",
        description="RepMet v1, v2, v3 and CVPR losses",
        covers=("repmet-v1", "repmet-v2", "repmet-v3", "repmet-cvpr"),
        num_samples=NUM_SAMPLES,
    ),
    SearchSpace(
        name="cluster-margin",
        description="cluster-margin loss on squared and on plain distances",
        covers=("cluster-margin", "cluster-margin-v1"),
        num_samples=NUM_SAMPLES,
    ),
    SearchSpace(
        name="all",
        description="every catalogued loss",
        covers=None,
        num_samples=NUM_SAMPLES,
    ),
):
    SEARCH_SPACES.add(_space.name, _space)
