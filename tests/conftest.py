"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from repmet.data import DatasetSplits, load_dataset

# Quiet Ray before any test module imports it (conftest runs first): no usage reporting, no
# token-auth banner, no warnings about frequent snapshots from trials that take milliseconds.
for _key, _value in {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}.items():
    os.environ.setdefault(_key, _value)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    """Every test starts from the same random state, so a failure reproduces."""
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def digits() -> DatasetSplits:
    """The default data set (seed 0, no augmentation), loaded once; tests must not modify it."""
    return load_dataset("digits")
