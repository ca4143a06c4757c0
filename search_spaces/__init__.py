"""Named hyperparameter search spaces for the study: ``magnet``, ``repmet``, ``cluster-margin``,
``field`` (the field's losses, from pytorch-metric-learning) and ``all``.

A space lists its losses, a trial budget per loss and fixed trial settings; what each loss searches
comes from its catalogue entry, through one Optuna define-by-run function (see
:mod:`search_spaces.base`). Each loss is searched by its own Optuna study. Look spaces up by name
with ``SEARCH_SPACES.get(name)``.
"""

from search_spaces import spaces  # noqa: F401  (registration)
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
