"""Named hyperparameter search spaces for the study: ``magnet``, ``repmet``, ``cluster-margin`` and
``all``.

A space lists its losses, a trial budget per loss, fixed trial settings and one Optuna
define-by-run function per loss (see :mod:`search_spaces.base`); each loss is searched by its own
Optuna study. Look spaces up by name with ``SEARCH_SPACES.get(name)``.
"""

from search_spaces import all_losses, cluster_margin, magnet, repmet  # noqa: F401  (registration)
from search_spaces.base import (
    CPU_BATCH_BUDGET,
    DEFAULT_FIXED,
    GPU_BATCH_BUDGET,
    SEARCH_SPACES,
    Baseline,
    SearchSpace,
    SpaceContext,
)

__all__ = [
    "CPU_BATCH_BUDGET",
    "DEFAULT_FIXED",
    "GPU_BATCH_BUDGET",
    "SEARCH_SPACES",
    "Baseline",
    "SearchSpace",
    "SpaceContext",
]
