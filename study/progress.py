"""A one-line live progress display for a study, as a Ray Tune callback.

Tune pickles its callbacks with the experiment (``tuner.pkl``) and restores them on resume, so the
callback keeps only plain values and recomputes everything from the trials Tune passes in.

A trial counts as done once its last result says so (``done``: it finished, was stopped early or
failed for its configuration) or it errored. Tune marks the trials it stops on Ctrl-C as
TERMINATED as well; those have no final result and count as interrupted, not done.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from repmet.formatting import format_duration
from repmet.study_folder.layout import DONE, ITERATION, TRIAL_FAILED

#: On a terminal the line is redrawn at most this often; in a log, a line is written this often.
TERMINAL_REFRESH_S = 0.5
LOG_REFRESH_S = 30.0


class StudyProgress(Callback):
    """Shows, for the losses being searched side by side: trials done / running / planned, the
    best validation error so far, the elapsed time and an estimate of the time left.

    One loss: ``[1/1] magnet: 2/8 done, 1 running | best val/error_simple 0.1234 | ...``. Several:
    ``[2 losses] magnet 2/8, softmax 1/8 done, 2 running | best val/error_simple magnet 0.1234,
    softmax - | ...`` (on a terminal, cut to its width).

    Args:
        losses: the losses of the study's Tune experiment, in the study's order.
        num_samples: trials planned per loss.
        iterations: training iterations of a trial that runs to the end.
        metric: the validation metric to show the best value of.
        mode: "min" or "max".
        study_started_at: when this run of the study began (``time.time()``): the elapsed time
            shown counts from there.
    """

    def __init__(
        self,
        *,
        losses: Sequence[str],
        num_samples: int,
        iterations: int,
        metric: str,
        mode: str,
        study_started_at: float | None = None,
    ) -> None:
        self.losses = tuple(losses)
        self.num_samples = num_samples
        self.iterations = iterations
        self.metric = metric
        self.mode = mode
        self.study_started_at = time.time() if study_started_at is None else study_started_at
        self._started = time.monotonic()
        self._start_fraction = -1.0
        self._last_shown = -math.inf
        self._last_line = ""

    def setup(self, **info: Any) -> None:
        # Called at the start of a run and again on resume: time from here, estimate from here.
        # A resumed study may plan more trials than the pickled callback knows of.
        planned = info.get("total_num_samples")
        if isinstance(planned, int) and len(self.losses) <= planned < 2**62:
            self.num_samples = planned // len(self.losses)
        self._started = time.monotonic()
        self._start_fraction = -1.0
        self._last_shown = -math.inf

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self._show(trials, force=False)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        reason = (trial.last_result or {}).get(TRIAL_FAILED)
        if reason:
            name = Path(trial.path).name if trial.path else trial.trial_id
            self._write(f"{self._loss_of(trial)}: trial {name} failed: {reason}; the study goes on")
        self._show(trials, force=True)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        where = Path(trial.path) / "error.txt" if trial.path else "the trial folder"
        self._write(
            f"{self._loss_of(trial)}: trial {trial.trial_id} failed; the traceback is in {where}"
        )
        self._show(trials, force=True)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self._show(trials, force=True)
        if sys.stdout.isatty():
            sys.stdout.write("\n")
            sys.stdout.flush()

    def line(self, trials: list[Trial]) -> str:
        """The progress line for the current state of ``trials``."""
        done = sum(is_done(t) for t in trials)
        errors = sum(t.status == Trial.ERROR or is_failed(t) for t in trials)
        running = sum(t.status == Trial.RUNNING and not is_done(t) for t in trials)
        interrupted = sum(t.status == Trial.TERMINATED and not is_done(t) for t in trials)
        fraction = self._study_fraction(trials)
        if self._start_fraction < 0:
            self._start_fraction = fraction
        elapsed = time.monotonic() - self._started
        gained = fraction - self._start_fraction
        # Before a trial has finished, the rate of progress says little about the time left.
        eta = elapsed * (1.0 - fraction) / gained if gained > 0 and done else math.nan
        by_loss = {loss: [t for t in trials if self._loss_of(t) == loss] for loss in self.losses}
        if len(self.losses) == 1:
            parts = [f"[1/1] {self.losses[0]}:", f"{done}/{self.num_samples} done,"]
        else:
            counts = ", ".join(
                f"{loss} {sum(map(is_done, of))}/{self.num_samples}"
                for loss, of in by_loss.items()
            )
            parts = [f"[{len(self.losses)} losses] {counts} done,"]
        parts.append(f"{running} running")
        if errors:
            parts[-1] += ","
            parts.append(f"{errors} failed")
        if interrupted:
            parts[-1] += ","
            parts.append(f"{interrupted} interrupted")
        if len(self.losses) == 1:
            best = self._best(trials)
            parts.append(f"| best {self.metric} {best:.4f}" if best is not None else "| best -")
        else:
            bests = ((loss, self._best(of)) for loss, of in by_loss.items())
            shown = ", ".join(f"{loss} {'-' if b is None else f'{b:.4f}'}" for loss, b in bests)
            parts.append(f"| best {self.metric} {shown}")
        elapsed = format_duration(time.time() - self.study_started_at, compact=True)
        parts.append(f"| {elapsed} elapsed")
        left = format_duration(eta, compact=True) if math.isfinite(eta) else "-"
        parts.append(f"| ETA {left}")
        return " ".join(parts)

    def _loss_of(self, trial: Trial) -> str:
        """The loss a trial trains (its config says; a study of one loss needs no config)."""
        config = getattr(trial, "config", None) or {}
        return str(config.get("loss", self.losses[0]))

    def _show(self, trials: list[Trial], *, force: bool) -> None:
        terminal = sys.stdout.isatty()
        now = time.monotonic()
        interval = TERMINAL_REFRESH_S if terminal else LOG_REFRESH_S
        if not force and now - self._last_shown < interval:
            return
        line = self.line(trials)
        if not terminal and line == self._last_line:
            return
        self._last_shown, self._last_line = now, line
        if terminal:
            # A line longer than the terminal would wrap, and the next redraw clears only its end.
            line = line[: max(shutil.get_terminal_size().columns - 1, 20)]
            sys.stdout.write("\r\033[K" + line)
            sys.stdout.flush()
        else:
            self._write(line)

    @staticmethod
    def _write(line: str) -> None:
        """A line of its own (on a terminal, below the progress line being redrawn)."""
        sys.stdout.write(("\r\033[K" if sys.stdout.isatty() else "") + line + "\n")
        sys.stdout.flush()

    def _best(self, trials: list[Trial]) -> float | None:
        key = "min" if self.mode == "min" else "max"
        values = [
            t.metric_analysis[self.metric][key]
            for t in trials
            if self.metric in t.metric_analysis and not is_failed(t)
        ]
        if not values:
            return None
        return min(values) if self.mode == "min" else max(values)

    def _study_fraction(self, trials: list[Trial]) -> float:
        """Share of the study's planned work that is done (finished trials count whole)."""
        work = 0.0
        for trial in trials:
            if is_done(trial):
                work += 1.0
            else:
                iteration = (trial.last_result or {}).get(ITERATION, 0) or 0
                work += min(float(iteration) / self.iterations, 1.0)
        return min(work / (self.num_samples * len(self.losses)), 1.0)


def is_done(trial: Trial) -> bool:
    """Whether a trial has ended for good: a final result (finished, stopped early, failed for its
    configuration) or an error after its retries. A trial Tune stopped on Ctrl-C is not done."""
    return trial.status == Trial.ERROR or bool((trial.last_result or {}).get(DONE))


def is_failed(trial: Trial) -> bool:
    """Whether a trial failed for its own configuration (``layout.TRIAL_FAILED``)."""
    return bool((trial.last_result or {}).get(TRIAL_FAILED))
