"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
from pathlib import Path

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


#: The losses of the tiny study shared by the report tests.
TINY_STUDY_LOSSES = ("magnet", "repmet-v2")


@pytest.fixture(scope="session")
def study_dir(ray_local, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real study made once per test session by the study driver: two losses, two trials
    each, 20 iterations on digits (``--smoke``)."""
    from study.run import main as run_study

    storage = tmp_path_factory.mktemp("studies")
    argv = ["--space", "all", "--losses", ",".join(TINY_STUDY_LOSSES), "--smoke"]
    argv += ["--storage", str(storage), "--name", "tiny", "--scheduler", "none"]
    argv += ["--max-concurrent", "1"]
    assert run_study(argv) == 0
    return storage / "tiny"


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
