"""What a study prints: its header, the per-loss summaries, the closing hints, the message for a
trial that raised, and the one duration format of the study's output (also used by the live
progress line, :mod:`study.progress`).

Ray-free: results are read through the attributes of Tune's ``Result`` (``metrics``, ``config``,
``error``, ``path``), so the driver (:mod:`study.tuning`) decides what happened and this module
only says it.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from repmet.formatting import format_duration, format_value
from repmet.study_folder.layout import TRIAL_FAILED, TRIALS_FILE
from repmet.study_folder.searched import searched_parameters

if TYPE_CHECKING:
    from ray.tune import Result

    from repmet.study_folder.manifest import StudySettings


def first_line(error: BaseException | str) -> str:
    """The first non-empty line of an error's message (Ray's messages run over many lines)."""
    text = error if isinstance(error, str) else str(error) or type(error).__name__
    return next((line.strip() for line in text.splitlines() if line.strip()), text.strip())


def command_hint(program: str, *arguments: object) -> str:
    """A command line that runs ``program`` as this study's interpreter would, in a new shell:
    a script with this Python, a tool from the same environment (``.venv/bin/tensorboard``);
    paths under the current folder are written relative to it."""

    def shown(path: Path) -> str:
        try:
            return str(path.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    interpreter = Path(sys.executable)
    if program.endswith(".py"):
        parts = [shown(interpreter), program]
    else:
        tool = interpreter.parent / program
        parts = [shown(tool) if tool.exists() else program]
    parts += [shown(a) if isinstance(a, Path) else str(a) for a in arguments]
    return shlex.join(parts)


def study_header(folder: Path, settings: StudySettings) -> str:
    """The line a run of the study starts with: what it searches, on what, and where."""
    return (
        f"Study {folder.name!r}: {', '.join(settings.losses)} on "
        f"{settings.fixed['dataset']}, {settings.num_samples} trials each -> {folder}"
    )


def study_done(folder: Path, seconds: float) -> str:
    """The closing lines of a study that finished: its duration and how to look at its results."""
    return "\n".join(
        [
            f"Done in {format_duration(seconds, compact=True)}. Results: {folder}",
            f"  table:   {command_hint('analysis/report.py', folder)}",
            f"  curves:  {command_hint('tensorboard', '--logdir', folder)}",
            f"  trials:  {folder / TRIALS_FILE} (pandas.read_csv)",
        ]
    )


def errored_message(loss: str, errored: Sequence[Result]) -> str:
    """Why the study stopped when trials of ``loss`` raised an error after their retries: the
    first error's last line and where its traceback is."""
    first = errored[0]
    cause = first.error
    cause = getattr(cause, "cause", None) or cause
    if isinstance(cause, str):  # Tune's fallback: the text of error.txt
        lines = [line.strip() for line in cause.splitlines() if line.strip()]
        what = lines[-1] if lines else "unknown error"
    else:
        what = f"{type(cause).__name__}: {first_line(cause)}"
    where = os.path.join(first.path, "error.txt") if first.path else "its trial folder"
    count = len(errored)
    return (
        f"{loss}: {count} trial{'s' if count > 1 else ''} stopped with an error ({what}); "
        f"the traceback is in {where}; the study stopped: fix the cause and continue it "
        "with --resume"
    )


def summarize(loss: str, results: Iterable[Result], settings: StudySettings) -> str:
    """One line per loss: trials run, how many failed for their configuration, and the best
    configuration among the others."""
    results = list(results)
    objective, sign = settings.objective, settings.selection.sign
    failed = sum(bool(result.metrics.get(TRIAL_FAILED)) for result in results)
    scored = [
        result
        for result in results
        if result.error is None
        and not result.metrics.get(TRIAL_FAILED)
        and isinstance(result.metrics.get(objective), (int, float))
        and math.isfinite(result.metrics[objective])
    ]
    counted = f"{loss}: {len(results)} trials" + (
        f" ({failed} failed for their configuration)" if failed else ""
    )
    if not scored:
        return f"{counted}, none " + (
            "finished without failing" if failed else f"reported {objective}"
        )
    best = min(scored, key=lambda result: sign * result.metrics[objective])
    value = best.metrics[objective]
    own = searched_parameters(settings, loss)
    searched = {k: v for k, v in best.config.items() if k in own}
    shown = " ".join(f"{k}={format_value(v)}" for k, v in searched.items())
    return f"{counted}, best {settings.metric} {value:.4f} ({shown})"
