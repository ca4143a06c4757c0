"""The named search spaces (``--space``). What each loss searches comes from its catalogue entry
(:mod:`repmet.catalogue`); a space only groups losses and sets their common trial budget.

Every family space also searches the softmax baseline with the same budget, so that each study's
table holds a tuned reference row (both papers measure themselves against softmax).
"""

from __future__ import annotations

from repmet.catalogue import REFERENCE
from search_spaces.base import SEARCH_SPACES, SearchSpace

#: Trials per loss: the repmet study (4 losses and the softmax reference) still ends in minutes on
#: 2 cores.
NUM_SAMPLES = 16

for _space in (
    SearchSpace(
        name="magnet",
        description="Magnet loss, with the softmax reference",
        covers=("magnet", REFERENCE),
        num_samples=NUM_SAMPLES,
    ),
    SearchSpace(
        name="repmet",
        description="RepMet v1, v2, v3 and CVPR losses, with the softmax reference",
        covers=("repmet-v1", "repmet-v2", "repmet-v3", "repmet-cvpr", REFERENCE),
        num_samples=NUM_SAMPLES,
    ),
    SearchSpace(
        name="cluster-margin",
        description="cluster-margin loss on squared and on plain distances, with the softmax "
        "reference",
        covers=("cluster-margin", "cluster-margin-v1", REFERENCE),
        num_samples=NUM_SAMPLES,
    ),
    SearchSpace(
        name="field",
        description="the field's losses from pytorch-metric-learning (contrastive, triplet, "
        "multi-similarity, ProxyAnchor, SoftTriple, ArcFace), with the softmax reference",
        covers=(
            "contrastive",
            "triplet",
            "multi-similarity",
            "proxy-anchor",
            "soft-triple",
            "arcface",
            REFERENCE,
        ),
        num_samples=NUM_SAMPLES,
    ),
    SearchSpace(
        name="softmax",
        description="softmax cross-entropy alone",
        covers=(REFERENCE,),
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
