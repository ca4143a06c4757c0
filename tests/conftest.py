"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from study_fixture import STORED_STUDY

from repmet.data import DatasetSplits, load_dataset

# Quiet Ray before any test module imports it (conftest runs first): no usage reporting, no
# token-auth banner, no warnings about frequent snapshots from trials that take milliseconds.
for _key, _value in {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}.items():
    os.environ.setdefault(_key, _value)


E2E = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of tests/e2e (it starts Ray, a Tune study or a process) is ``slow``, so that
    ``-m "not slow"`` selects the same tests as ``pytest tests/core tests/study tests/analysis``."""
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    """Every test starts from the same random state, so a failure reproduces."""
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def ray_local():
    """One in-process Ray for the in-process studies of every test module."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, log_to_driver=False, configure_logging=False)
    yield


@pytest.fixture(scope="session")
def digits() -> DatasetSplits:
    """The default data set (seed 0, no augmentation), loaded once; tests must not modify it."""
    return load_dataset("digits")


@pytest.fixture(scope="session")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny real study stored in ``tests/data/study_tiny`` (two losses, two trials
    each, 20 iterations on digits; ``tests/study_fixture.py`` made it), so that nothing a test
    writes lands in the repository; tests must not modify it."""
    copy = tmp_path_factory.mktemp("studies") / STORED_STUDY.name
    shutil.copytree(STORED_STUDY, copy)
    return copy


@pytest.fixture(scope="session")
def made(study_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The report of the tiny study, made once per session: figures, all formats, two repeats.
    Returns the report and its folder; tests must not modify either."""
    from analysis import report as report_cli

    out = tmp_path_factory.mktemp("report")
    args = report_cli.parse_args(
        [str(study_dir), "--device", "cpu", "--out", str(out), "--repeats", "2"]
    )
    return report_cli.run(args), out
