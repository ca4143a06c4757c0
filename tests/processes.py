"""Running the commands as processes of their own, as a user would."""

from __future__ import annotations

import os
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment with ``extra``, the repository importable, and no Ray address
    (a command must start its own Ray unless told otherwise)."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPOSITORY), env.get("PYTHONPATH")) if p)
    env.pop("RAY_ADDRESS", None)
    return env
