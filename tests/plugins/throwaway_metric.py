"""A metric that exists only for the tests: one catalogue entry plus its function, nothing else.

Imported through ``$REPMET_PLUGINS=throwaway_metric`` (with this folder on ``PYTHONPATH``), it shows
that a new metric needs no change anywhere else in the suite: the trial reports it, ``trials.csv``,
TensorBoard and Optuna record it, ``--select`` accepts it and the report's results table shows it.
"""

from __future__ import annotations

import torch

from repmet.measures import SplitData
from repmet.metrics import Metric, register_metric


def nearest_neighbour_error(split: SplitData) -> float:
    """Leave-one-out 1-nearest-neighbour error of the split on its own embeddings."""
    distances = torch.cdist(split.embeddings, split.embeddings)
    distances.fill_diagonal_(torch.inf)
    nearest = distances.argmin(dim=1)
    return float((split.labels[nearest] != split.labels).double().mean())


METRIC = register_metric(
    Metric(
        name="error_1nn",
        label="1-NN error",
        header="1-NN Error",
        direction="min",
        table="error",
        worst=1.0,
        compute=nearest_neighbour_error,
        summary="leave-one-out 1-nearest-neighbour error (a test plugin)",
    )
)
