"""The ``cluster-margin`` space: the cluster-margin loss on squared (``cluster-margin``) and plain
(``cluster-margin-v1``) Euclidean distances, 16 trials each.

Searched: K, M, D (feasibility-ordered), embedding size, network lr, index refresh period, sigma,
the representatives' lr and the margin alpha (how far beyond the farthest own-class example the
ball around a representative reaches).
"""

from __future__ import annotations

from search_spaces.base import SEARCH_SPACES, SearchSpace, define_representative_loss

NUM_SAMPLES = 16

DEFINITIONS = {
    "cluster-margin": define_representative_loss,
    "cluster-margin-v1": define_representative_loss,
}

SPACE = SearchSpace(
    name="cluster-margin",
    description="cluster-margin loss (squared and plain distances): K, M, D, embedding size, lr, "
    "refresh period, sigma, rep_lr, alpha",
    definitions=DEFINITIONS,
    num_samples=NUM_SAMPLES,
)
SEARCH_SPACES.add(SPACE.name, SPACE)
