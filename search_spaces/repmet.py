"""The ``repmet`` space: the four RepMet losses (repmet-v1, -v2, -v3, -cvpr), 16 trials each.

Searched: K, M, D (feasibility-ordered), embedding size, network lr, index refresh period, sigma,
the representatives' lr and, except for repmet-v2, the margin alpha. repmet-v2 computes
[-log(own / all) + alpha]_+ whose log term is never negative, so the hinge is always active and
alpha only shifts the loss by a constant without changing a gradient: searching it wastes trials.
"""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces.base import (
    SEARCH_SPACES,
    SearchSpace,
    SpaceContext,
    define_representative_loss,
    suggest_clusters,
    suggest_network,
    suggest_representatives,
)

NUM_SAMPLES = 16


def define_repmet_v2(trial: optuna.Trial, *, context: SpaceContext) -> dict[str, Any] | None:
    """repmet-v2 hyperparameters: those of the other RepMet losses but alpha (see module)."""
    suggest_clusters(trial, context)
    suggest_network(trial, context)
    suggest_representatives(trial)
    return None


DEFINITIONS = {
    "repmet-v1": define_representative_loss,
    "repmet-v2": define_repmet_v2,
    "repmet-v3": define_representative_loss,
    "repmet-cvpr": define_representative_loss,
}

SPACE = SearchSpace(
    name="repmet",
    description="RepMet v1, v2, v3 and CVPR losses: K, M, D, embedding size, lr, refresh period, "
    "sigma, rep_lr, alpha (not for v2)",
    definitions=DEFINITIONS,
    num_samples=NUM_SAMPLES,
)
SEARCH_SPACES.add(SPACE.name, SPACE)
