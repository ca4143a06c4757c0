"""The ``magnet`` space: Magnet loss (Magnet paper eq. 4-5), 16 trials.

Searched: K, M, D (feasibility-ordered), embedding size, network lr, index refresh period and the
margin alpha. Magnet estimates its variance from the batch (eq. 5), so there is no sigma, and it has
no learned representatives, so there is no rep_lr.
"""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces.base import (
    SEARCH_SPACES,
    SearchSpace,
    SpaceContext,
    suggest_clusters,
    suggest_margin,
    suggest_network,
)

NUM_SAMPLES = 16


def define_magnet(trial: optuna.Trial, *, context: SpaceContext) -> dict[str, Any] | None:
    """Magnet loss hyperparameters."""
    suggest_clusters(trial, context)
    suggest_network(trial, context)
    suggest_margin(trial)
    return None


DEFINITIONS = {"magnet": define_magnet}

SPACE = SearchSpace(
    name="magnet",
    description="Magnet loss: K, M, D, embedding size, lr, refresh period, alpha",
    definitions=DEFINITIONS,
    num_samples=NUM_SAMPLES,
)
SEARCH_SPACES.add(SPACE.name, SPACE)
