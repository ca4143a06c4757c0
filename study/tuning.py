"""The Ray Tune side of a study: connecting to Ray, one Tune experiment per loss (Optuna TPE with
the baseline first, ASHA, checkpoints, retries), resuming, and the per-loss summary."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
import ray.cloudpickle
from ray import tune
from ray.exceptions import RayError
from ray.tune.error import TuneError
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from repmet.cli import WorkFailed
from repmet.config import TrainingConfig
from repmet.errors import ConfigError
from repmet.study_format import (
    FINISHED,
    INTERRUPTED,
    OPTUNA_FILE,
    RUNNING,
    TRIAL_FAILED,
    Manifest,
    StudySettings,
)
from search_spaces import SEARCH_SPACES, SpaceContext
from study.progress import StudyProgress, format_duration
from trainables import MetricLearningTrainable

#: ASHA: rungs at 1, 3, 9, ... evaluations; a third of the trials reaching a rung go on.
ASHA_GRACE_PERIOD = 1
ASHA_REDUCTION_FACTOR = 3
#: Checkpoints kept per trial: the best by the selection metric (Tune also keeps the latest).
CHECKPOINTS_KEPT = 1


class StudyInterrupted(WorkFailed):
    """A study stopped by Ctrl-C (or SIGUSR1) before every trial of a loss finished; ``--resume``
    continues it. ``study/run.py`` ends with exit status 130 for it."""

    interrupted = True


class StudyFailed(WorkFailed):
    """A failure of the whole study, not of one configuration: a trial raised an error after its
    retries (missing data on a node, a worker that cannot import the project, a bug), or Ray
    itself failed. The study stops; ``--resume`` continues it once the cause is fixed."""


class ResumableOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch, except that a trial that fails stays open (RUNNING) in the Optuna
    study instead of being closed as FAIL: ``--resume`` continues such trials from their
    checkpoints, and their final result must then still reach Optuna."""

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if error or trial_id in self._completed_trials:
            return
        super().on_trial_complete(trial_id, result=result, error=error)


class ResumableConcurrencyLimiter(ConcurrencyLimiter):
    """Tune's ConcurrencyLimiter forgets a trial when it fails and then drops the completion of
    that trial once a resumed run finishes it; this one passes such completions on."""

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if trial_id in self.live_trials:
            super().on_trial_complete(trial_id, result=result, error=error)
        else:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)


@dataclass(frozen=True)
class Study:
    """A study being run: its folder, its manifest (with the settings) and its data context."""

    folder: Path
    manifest: Manifest
    context: SpaceContext

    @property
    def settings(self) -> StudySettings:
        return self.manifest.settings


def connect(*, address: str | None, verbose: bool) -> bool:
    """Starts a local Ray, or joins ``address``; returns whether this call started it."""
    if ray.is_initialized():
        return False
    logging_level = logging.INFO if verbose else logging.ERROR
    # Joining a cluster, Ray's C++ client logs a warning per failed attempt straight to stderr;
    # the one line below says what went wrong (--verbose shows them).
    quiet = not verbose and address not in (None, "local")
    try:
        with _stderr_dropped(quiet):
            ray.init(
                address=address or "local",
                log_to_driver=verbose,
                logging_level=logging_level,
                configure_logging=True,
            )
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        raise ConfigError(f"cannot reach {where}: {first_line(error)}") from None
    return True


@contextlib.contextmanager
def _stderr_dropped(enabled: bool) -> Iterator[None]:
    """Sends what the process writes to file descriptor 2 to a scratch file while the block runs."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def first_line(error: BaseException | str) -> str:
    """The first non-empty line of an error's message (Ray's messages run over many lines)."""
    text = error if isinstance(error, str) else str(error) or type(error).__name__
    return next((line.strip() for line in text.splitlines() if line.strip()), text.strip())


def disconnect() -> None:
    ray.shutdown()


def check_resources(settings: StudySettings) -> None:
    """Refuses requests no node can satisfy, instead of leaving trials pending forever."""
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    most_cpus = max((node.get("CPU", 0.0) for node in nodes), default=0.0)
    most_gpus = max((node.get("GPU", 0.0) for node in nodes), default=0.0)
    if settings.gpus_per_trial > most_gpus:
        raise ConfigError(
            f"--gpus-per-trial {settings.gpus_per_trial:g} cannot be met: the largest node of the "
            f"Ray cluster has {most_gpus:g} GPUs"
        )
    if settings.cpus_per_trial > most_cpus:
        raise ConfigError(
            f"--cpus-per-trial {settings.cpus_per_trial:g} cannot be met: the largest node of the "
            f"Ray cluster has {most_cpus:g} CPUs"
        )


def trial_dirname(trial: Trial) -> str:
    """Short trial folder names in creation order (Tune's default repeats every parameter)."""
    counter = trial.experiment_tag.split("_", 1)[0]
    return f"trial_{int(counter):03d}_{trial.trial_id}" if counter.isdigit() else trial.trial_id


def run_losses(study: Study) -> int:
    """Runs the Tune experiment of every loss not finished yet, one after another.

    A loss ends in one of three ways. Every planned trial ended (finished, stopped early, or
    failed for its own configuration): the loss is finished and the next one starts. A trial
    raised an error after its retries: the study stops (:class:`StudyFailed`). Ctrl-C left trials
    unfinished: the study stops (:class:`StudyInterrupted`). Either way ``--resume`` continues.
    """
    settings, manifest = study.settings, study.manifest
    started = time.monotonic()
    print(
        f"Study {study.folder.name!r}: {', '.join(settings.losses)} on "
        f"{settings.fixed['dataset']}, {settings.num_samples} trials each -> {study.folder}"
    )
    summaries = []
    for index, loss in enumerate(settings.losses):
        if manifest.status[loss] == FINISHED:
            summaries.append(f"{loss}: finished earlier")
            continue
        manifest.set_status(loss, RUNNING)
        try:
            extend_experiment(study.folder / loss, settings.num_samples)
            results = fit_loss(study, loss, index)
        except KeyboardInterrupt:
            manifest.set_status(loss, INTERRUPTED)
            raise StudyInterrupted(
                f"interrupted during {loss}; continue the study with --resume"
            ) from None
        except (TuneError, RayError) as error:
            manifest.set_status(loss, INTERRUPTED)
            raise StudyFailed(
                f"{loss}: Ray stopped the study ({type(error).__name__}: {first_line(error)}); "
                "continue it with --resume once the cause is fixed"
            ) from None
        outcome = LossOutcome.of(results, settings.num_samples)
        if outcome.errored:
            manifest.set_status(loss, INTERRUPTED)
            print("\n".join(summaries))
            raise StudyFailed(outcome.error_message(loss))
        if outcome.unfinished:
            manifest.set_status(loss, INTERRUPTED)
            print("\n".join(summaries))
            raise StudyInterrupted(
                f"interrupted during {loss} ({outcome.ended} of {settings.num_samples} trials "
                "finished); continue the study with --resume"
            )
        manifest.set_status(loss, FINISHED)
        summaries.append(summarize(loss, results, settings))
    print("\n".join(summaries))
    print(f"Done in {format_duration(time.monotonic() - started)}. Results: {study.folder}")
    print(f"  curves:  tensorboard --logdir {shlex.quote(str(study.folder))}")
    print(f"  table:   python analysis/report.py {shlex.quote(str(study.folder))}")
    return 0


@dataclass(frozen=True)
class LossOutcome:
    """How the trials of one Tune experiment ended.

    Attributes:
        ended: trials with a final result (finished, stopped early, failed for their
            configuration) or an error.
        failed: trials that failed for their own configuration (``TRIAL_FAILED``).
        errored: trials that raised an error after their retries, with their error.
        unfinished: planned trials without a final result (interrupted, pending, not created).
    """

    ended: int
    failed: int
    errored: tuple[tune.Result, ...]
    unfinished: int

    @classmethod
    def of(cls, results: tune.ResultGrid, planned: int) -> LossOutcome:
        errored = tuple(result for result in results if result.error is not None)
        clean = [result for result in results if result.error is None]
        done = sum(bool(result.metrics.get("done")) for result in clean)
        failed = sum(bool(result.metrics.get(TRIAL_FAILED)) for result in clean)
        ended = done + len(errored)
        return cls(ended=ended, failed=failed, errored=errored, unfinished=max(planned - ended, 0))

    def error_message(self, loss: str) -> str:
        first = self.errored[0]
        cause = first.error
        cause = getattr(cause, "cause", None) or cause
        if isinstance(cause, str):  # Tune's fallback: the text of error.txt
            lines = [line.strip() for line in cause.splitlines() if line.strip()]
            what = lines[-1] if lines else "unknown error"
        else:
            what = f"{type(cause).__name__}: {first_line(cause)}"
        where = os.path.join(first.path, "error.txt") if first.path else "its trial folder"
        count = len(self.errored)
        return (
            f"{loss}: {count} trial{'s' if count > 1 else ''} stopped with an error ({what}); "
            f"the traceback is in {where}; the study stopped: fix the cause and continue it "
            "with --resume"
        )


def extend_experiment(path: Path, num_samples: int) -> None:
    """Lets the Tune experiment at ``path`` (if any) create trials up to ``num_samples``.

    ``Tuner.restore`` keeps the number of samples of the first run: its search generator's state
    (``search_gen_state-*.json``, the newest file of which Tune restores) counts the trials it
    created against that total. Raising the total there makes the restored experiment ask the
    searcher (Optuna, with its whole history) for the extra trials.
    """
    states = sorted(path.glob("search_gen_state-*.json"))
    if not states:
        return
    newest = states[-1]
    try:
        with newest.open("rb") as stream:
            state: dict[str, Any] = ray.cloudpickle.load(stream)
        total = int(state["total_samples"])
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as error:
        raise StudyFailed(
            f"cannot continue the Tune experiment at {path}: its state {newest.name} is "
            f"unreadable ({type(error).__name__}: {first_line(error)})"
        ) from None
    if total >= num_samples:
        return
    state["total_samples"] = num_samples
    state["finished"] = False
    temporary = newest.with_name(f".{newest.name}.tmp")
    with temporary.open("wb") as stream:
        ray.cloudpickle.dump(state, stream)
    os.replace(temporary, newest)


def fit_loss(study: Study, loss: str, index: int) -> tune.ResultGrid:
    """Runs (or resumes) the Tune experiment of one loss."""
    settings = study.settings
    path = study.folder / loss
    trainable = tune.with_resources(
        MetricLearningTrainable,
        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial},
    )
    if path.exists() and tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
        return tuner.fit()
    # A loss that died before Tune's first snapshot starts over, Optuna study included.
    shutil.rmtree(path, ignore_errors=True)
    storage = optuna_storage(study.folder)
    if loss in {summary.study_name for summary in optuna.get_all_study_summaries(storage)}:
        optuna.delete_study(study_name=loss, storage=storage)
    tuner = tune.Tuner(
        trainable,
        # The whole configuration, so that params.json says everything the trial trained with.
        param_space=TrainingConfig.from_dict({**settings.fixed, "loss": loss}).to_dict(),
        tune_config=tune.TuneConfig(
            metric=settings.objective,
            mode=settings.mode,
            search_alg=ResumableConcurrencyLimiter(
                ResumableOptunaSearch(
                    space=SEARCH_SPACES.get(settings.space).objective(loss, study.context),
                    metric=settings.objective,
                    mode=settings.mode,
                    points_to_evaluate=[dict(settings.baseline[loss])],
                    sampler=sampler(settings),
                    storage=storage,
                    study_name=loss,
                ),
                max_concurrent=max_concurrent(settings),
            ),
            scheduler=scheduler(settings),
            num_samples=settings.num_samples,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=loss,
            storage_path=str(study.folder),
            verbose=0,
            callbacks=[
                StudyProgress(
                    loss=loss,
                    loss_index=index,
                    loss_count=len(settings.losses),
                    num_samples=settings.num_samples,
                    iterations=settings.iterations,
                    metric=settings.metric,
                    mode=settings.mode,
                )
            ],
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=CHECKPOINTS_KEPT,
                checkpoint_score_attribute=settings.metric,
                checkpoint_score_order=settings.mode,
                checkpoint_frequency=1,
                checkpoint_at_end=True,
            ),
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            # The trainable writes its TensorBoard events into the trial folder: keep them.
            sync_config=tune.SyncConfig(sync_artifacts=True),
        ),
    )
    return tuner.fit()


def max_concurrent(settings: StudySettings) -> int:
    """``--max-concurrent``, or as many trials as the cluster's resources hold at once. Explicit,
    because Tune otherwise keeps one trial pending at a time for a searcher, which serialises
    short trials behind the start-up of each worker."""
    if settings.max_concurrent is not None:
        return settings.max_concurrent
    resources = ray.cluster_resources()
    fits = [resources.get("CPU", 0.0) / settings.cpus_per_trial]
    if settings.gpus_per_trial > 0:
        fits.append(resources.get("GPU", 0.0) / settings.gpus_per_trial)
    return max(1, math.floor(min(fits)))


def optuna_storage(folder: Path) -> optuna.storages.RDBStorage:
    folder.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{folder / OPTUNA_FILE}")


def sampler(settings: StudySettings) -> optuna.samplers.BaseSampler:
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=settings.seed)
    # TPE's default of 10 random start-up trials would use up a whole small budget (8 per loss)
    # before TPE models anything: a third of the budget, at least 2, explores first.
    startup = min(10, max(2, settings.num_samples // 3))
    return optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=startup)


def scheduler(settings: StudySettings) -> ASHAScheduler | FIFOScheduler:
    if settings.scheduler == "none":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=settings.steps_per_trial,
        grace_period=min(ASHA_GRACE_PERIOD, settings.steps_per_trial),
        reduction_factor=ASHA_REDUCTION_FACTOR,
    )


def summarize(loss: str, results: tune.ResultGrid, settings: StudySettings) -> str:
    """One line per loss: trials run, how many failed for their configuration, and the best
    configuration among the others."""
    objective, sign = settings.objective, (1.0 if settings.mode == "min" else -1.0)
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
    searched = {k: v for k, v in best.config.items() if k in settings.baseline[loss]}
    shown = " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in searched.items()
    )
    return f"{counted}, best {settings.metric} {value:.4f} ({shown})"
