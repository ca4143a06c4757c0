"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def two_loss_study(ray_local, tmp_path_factory) -> tuple[Path, int, str]:
    """A real study, made once per session in this process: magnet and repmet-v2 (different
    searched fields), three trials each under ASHA, ``--smoke``. Returns its folder, the status
    and the console output of ``study/run.py``; tests must not change what it holds."""
    from study.run import main

    storage = tmp_path_factory.mktemp("studies")
    argv = ["--space", "all", "--losses", "magnet,repmet-v2", "--smoke", "--num-samples", "3"]
    argv += ["--max-concurrent", "1", "--storage", str(storage), "--name", "two"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(argv)
    return storage / "two", status, out.getvalue()
