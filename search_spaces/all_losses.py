"""The ``all`` space: every loss (the magnet, repmet and cluster-margin spaces together), each
searched by its own study with the same budget of 16 trials."""

from __future__ import annotations

from search_spaces import cluster_margin, magnet, repmet
from search_spaces.base import SEARCH_SPACES, SearchSpace

NUM_SAMPLES = 16

SPACE = SearchSpace(
    name="all",
    description="every loss: magnet, repmet-v1/v2/v3/cvpr, cluster-margin, cluster-margin-v1",
    definitions={**magnet.DEFINITIONS, **repmet.DEFINITIONS, **cluster_margin.DEFINITIONS},
    num_samples=NUM_SAMPLES,
)
SEARCH_SPACES.add(SPACE.name, SPACE)
