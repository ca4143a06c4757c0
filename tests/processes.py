"""Running the commands as processes of their own, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
#: ``python study/run.py`` with this interpreter.
STUDY_COMMAND = [sys.executable, str(REPOSITORY / "study" / "run.py")]


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment with ``extra``, the repository importable, and no Ray address
    (a command must start its own Ray unless told otherwise)."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPOSITORY), env.get("PYTHONPATH")) if p)
    env.pop("RAY_ADDRESS", None)
    return env


def run_study(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """``python study/run.py ARGS`` in its own process, with ``env`` added to the environment."""
    return subprocess.run(
        [*STUDY_COMMAND, *args],
        cwd=REPOSITORY,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
