"""The Ray Tune side of a study: connecting to Ray, the study's one Tune experiment in which every
loss's trials run side by side (per loss: its Optuna TPE study with the baseline first, its ASHA
bracket, its budget of trials), checkpoints, retries, resuming, and how each loss ended.

What the study prints is :mod:`study.console`'s; what it plugs into Tune (searchers, schedulers,
trial folder names) is :mod:`study.tune_plugins`'s; every use of Ray's or Optuna's private API
goes through :mod:`study.library_internals`."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.exceptions import RayError
from ray.tune.error import TuneError
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from repmet.cli import WorkFailed
from repmet.config import TrainingConfig
from repmet.errors import ConfigError
from repmet.study_folder.layout import (
    DONE,
    EXPERIMENT_DIR,
    ITERATION,
    StudyFolderError,
)
from repmet.study_folder.manifest import FINISHED, INTERRUPTED, RUNNING, Manifest, StudySettings
from repmet.study_folder.searched import searched_by_any
from repmet.study_folder.trials import TrialStatus, trial_outcome
from repmet.study_folder.trials_csv import write_trials_csv
from repmet.study_options import NO_SCHEDULER, RANDOM_SAMPLER
from repmet.training import load_splits
from search_spaces import SEARCH_SPACES, SpaceContext
from study import library_internals as internals
from study.console import errored_message, first_line, study_done, study_header, summarize
from study.progress import StudyProgress

# Tune pickles the classes and trial_dirname with a study's experiment, and studies saved by
# earlier releases name them under this module: each stays importable from here for --resume, as
# tests/study/test_tune_plugins.py checks.
from study.tune_plugins import (
    BaselineKeepingASHA,
    NoTensorBoard,
    PerLossScheduler,
    ResumableConcurrencyLimiter,
    StudyOptunaSearch,
    StudySearch,
    optuna_storage,
    trial_dirname,
)
from trainables import MetricLearningTrainable

#: ASHA: rungs at 1, 3, 9, ... evaluations; a third of the trials reaching a rung go on.
ASHA_GRACE_PERIOD = 1
ASHA_REDUCTION_FACTOR = 3
#: Checkpoints kept per trial: the best by the selection metric (Tune also keeps the latest).
CHECKPOINTS_KEPT = 1


class StudyInterrupted(WorkFailed):
    """A study stopped by Ctrl-C (or SIGUSR1, or SIGTERM) before every trial of a loss finished;
    ``--resume`` continues it. ``study/run.py`` ends with exit status 130 for it (143 after
    SIGTERM)."""

    interrupted = True


class StudyFailed(WorkFailed):
    """A failure of the whole study, not of one configuration: a trial raised an error after its
    retries (missing data on a node, a worker that cannot import the project, a bug), or Ray
    itself failed. The study stops; ``--resume`` continues it once the cause is fixed."""


@dataclass(frozen=True)
class Study:
    """A study being run: its folder, its manifest (with the settings) and its data context."""

    folder: Path
    manifest: Manifest
    context: SpaceContext
    #: When this run of the study started (``time.time()``), for the progress display.
    started_at: float = field(default_factory=time.time)

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
        with _stderr_dropped(quiet), _sigterm_kept():
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
def _sigterm_kept() -> Iterator[None]:
    """Gives SIGTERM back the handler it had before the block: ``ray.init`` replaces it twice, in
    Python (``sys.exit``) and natively (a failure handler that prints a crash dump and aborts),
    and the study's own handler ends it as Ctrl-C does (``repmet.cli.SigtermAsCtrlC``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        # None: a handler not set from Python; the default is the nearest Python can restore.
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


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


def run_losses(study: Study, *, verbose: bool = False) -> int:
    """Runs (or continues) the study's one Tune experiment, every loss's trials side by side.

    A loss ends in one of three ways. Every planned trial ended (finished, stopped early, or
    failed for its own configuration): the loss is finished. A trial raised an error after its
    retries: the study stops (:class:`StudyFailed`). Ctrl-C left trials unfinished: the study
    stops (:class:`StudyInterrupted`). Either way ``--resume`` continues; each loss's status in
    the manifest says how it stands.
    """
    settings, manifest = study.settings, study.manifest
    started = time.monotonic()
    manifest.hardware = hardware()
    print(study_header(study.folder, settings))
    try:
        return _run_losses(study, verbose=verbose, started=started)
    finally:
        manifest.add_elapsed(time.monotonic() - started)
        record_trials(study.folder)


def _run_losses(study: Study, *, verbose: bool, started: float) -> int:
    settings, manifest = study.settings, study.manifest
    running = [loss for loss in settings.losses if manifest.status[loss] != FINISHED]
    for loss in running:
        manifest.set_status(loss, RUNNING)
    try:
        extend_experiment(
            study.folder / EXPERIMENT_DIR, settings.num_samples * len(settings.losses)
        )
        results = fit_study(study, verbose=verbose)
    except KeyboardInterrupt:
        _set_statuses(manifest, running, INTERRUPTED)
        raise StudyInterrupted(
            f"interrupted during {', '.join(running)}; continue the study with --resume"
        ) from None
    except (TuneError, RayError) as error:
        _set_statuses(manifest, running, INTERRUPTED)
        raise StudyFailed(
            f"{', '.join(running)}: Ray stopped the study ({type(error).__name__}: "
            f"{first_line(error)}); continue it with --resume once the cause is fixed"
        ) from None
    by_loss = results_by_loss(results, settings.losses)
    outcomes = {loss: LossOutcome.of(by_loss[loss], settings.num_samples) for loss in by_loss}
    summaries = []
    for loss, outcome in outcomes.items():
        ended = not outcome.errored and not outcome.unfinished
        manifest.set_status(loss, FINISHED if ended else INTERRUPTED)
        if ended:
            summaries.append(summarize(loss, by_loss[loss], settings))
    print("\n".join(summaries))
    errored = [(loss, outcome) for loss, outcome in outcomes.items() if outcome.errored]
    if errored:
        loss, outcome = errored[0]
        raise StudyFailed(errored_message(loss, outcome.errored))
    unfinished = [
        f"{loss} ({outcome.ended} of {settings.num_samples} trials finished)"
        for loss, outcome in outcomes.items()
        if outcome.unfinished
    ]
    if unfinished:
        raise StudyInterrupted(
            f"interrupted during {', '.join(unfinished)}; continue the study with --resume"
        )
    print(study_done(study.folder, time.monotonic() - started))
    return 0


def _set_statuses(manifest: Manifest, losses: Iterable[str], status: str) -> None:
    for loss in losses:
        manifest.set_status(loss, status)


def results_by_loss(
    results: Iterable[tune.Result], losses: Iterable[str]
) -> dict[str, list[tune.Result]]:
    """The results of the study's experiment grouped by the loss of their trial, in the study's
    order of losses."""
    grouped: dict[str, list[tune.Result]] = {loss: [] for loss in losses}
    for result in results:
        loss = (result.config or {}).get("loss")
        if loss in grouped:
            grouped[loss].append(result)
    return grouped


def record_trials(folder: Path) -> None:
    """Rewrites the study-wide trials.csv; a folder it cannot read yet costs only the table."""
    try:
        write_trials_csv(folder)
    except (StudyFolderError, OSError) as error:
        print(f"trials.csv not written: {first_line(error)}", file=sys.stderr)


def hardware() -> dict[str, Any]:
    """Where this run of the study ran: the machine and the Ray cluster it used."""
    import platform

    import torch

    resources = ray.cluster_resources()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "gpus": gpus or "none",
        "cluster": {key: resources[key] for key in ("CPU", "GPU") if key in resources},
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "optuna": optuna.__version__,
    }


@dataclass(frozen=True)
class LossOutcome:
    """How the trials of one loss ended.

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
    def of(cls, results: Iterable[tune.Result], planned: int) -> LossOutcome:
        results = list(results)
        errored = tuple(result for result in results if result.error is not None)
        outcomes = [
            trial_outcome(result.metrics, iterations=(result.config or {}).get("iterations", 0))
            for result in results
            if result.error is None and result.metrics.get(DONE)
        ]
        failed = sum(outcome is TrialStatus.FAILED for outcome in outcomes)
        ended = len(outcomes) + len(errored)
        return cls(ended=ended, failed=failed, errored=errored, unfinished=max(planned - ended, 0))


def extend_experiment(path: Path, num_samples: int) -> None:
    """Lets the Tune experiment at ``path`` (if any) create trials up to ``num_samples`` in all
    (:func:`study.library_internals.raise_planned_trials`)."""
    try:
        internals.raise_planned_trials(path, num_samples)
    except internals.SearchStateUnreadable as error:
        raise StudyFailed(f"cannot continue the Tune experiment at {path}: {error}") from None


def fit_study(study: Study, *, verbose: bool = False) -> tune.ResultGrid:
    """Runs (or resumes) the study's one Tune experiment, every loss's trials side by side;
    ``verbose`` shows Tune's own progress table instead of the study's progress line."""
    settings = study.settings
    path = study.folder / EXPERIMENT_DIR
    trainable = tune.with_resources(
        tune.with_parameters(MetricLearningTrainable, data=shared_data(settings)),
        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial},
    )
    if path.exists() and tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
        # Tune restores the RunConfig pickled when the study started; what the run shows follows
        # this command line instead, and the searcher this run's folder and trial budget. (Not
        # reachable through Ray Client: then the pickled settings stay.)
        run_config = internals.restored_run_config(tuner)
        if run_config is not None:
            for name, value in reporting(study, verbose=verbose).items():
                setattr(run_config, name, value)
            searcher = internals.restored_searcher(tuner)
            if isinstance(searcher, StudySearch):
                searcher.study_folder = study.folder
                searcher.num_samples = settings.num_samples
        return tuner.fit()
    # A study that died before Tune's first snapshot starts over, Optuna studies included.
    shutil.rmtree(path, ignore_errors=True)
    storage = optuna_storage(study.folder)
    stored = {summary.study_name for summary in optuna.get_all_study_summaries(storage)}
    for loss in stored.intersection(settings.losses):
        optuna.delete_study(study_name=loss, storage=storage)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=settings.objective,
            mode=settings.mode,
            search_alg=ResumableConcurrencyLimiter(
                study_search(study, storage), max_concurrent=max_concurrent(settings)
            ),
            scheduler=scheduler(settings),
            num_samples=settings.num_samples * len(settings.losses),
            # Workers move between losses: one trainable serves them all (reset_config).
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
            trial_name_creator=trial_dirname,  # Tune's table and logs name trials by folder
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT_DIR,
            storage_path=str(study.folder),
            **reporting(study, verbose=verbose),
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


def study_search(study: Study, storage: optuna.storages.RDBStorage) -> StudySearch:
    """Every loss's search: its Optuna study (named by the loss) with the baseline first, and the
    whole configuration its trials start from."""
    settings = study.settings
    space = SEARCH_SPACES.get(settings.space)
    searchers = {
        loss: StudyOptunaSearch(
            space=space.objective(loss, study.context),
            metric=settings.objective,
            mode=settings.mode,
            points_to_evaluate=[dict(settings.baseline[loss])],
            sampler=sampler(settings),
            storage=storage,
            study_name=loss,
        )
        for loss in settings.losses
    }
    return StudySearch(
        searchers,
        # The whole configuration, so that params.json says everything the trial trained with.
        configs={
            loss: TrainingConfig.from_dict({**settings.fixed, "loss": loss}).to_dict()
            for loss in settings.losses
        },
        num_samples=settings.num_samples,
        max_concurrent=settings.max_concurrent,
        metric=settings.objective,
        mode=settings.mode,
    )


def shared_data(settings: StudySettings) -> tuple[tuple[Any, ...], Any]:
    """The data set every trial of the study trains on, as the driver loaded it (the copy it
    checked the study against), for the trainables (see ``MetricLearningTrainable.setup``)."""
    config = TrainingConfig.from_dict(settings.fixed)
    return config.data_key(), load_splits(config, cached=True)


def reporting(study: Study, *, verbose: bool) -> dict[str, Any]:
    """The ``RunConfig`` fields that decide what the study's run shows and logs.

    Always Tune's JSON and CSV results (``result.json``, ``progress.csv``, ``params.json``) and
    never Tune's TensorBoard logger (the trainable writes the trial's records). Quiet: the study's
    one-line progress display. ``verbose``: Tune's own classic output (with
    ``RAY_AIR_NEW_OUTPUT=0``, as ``study/run.py`` sets it) with its trial table, the loss, every
    searched parameter and the objective, at each status report; the one-line display, which
    redraws its line, would garble it and is left out.
    """
    settings = study.settings
    callbacks: list[tune.Callback] = [NoTensorBoard()]
    if not verbose:
        callbacks.append(
            StudyProgress(
                losses=settings.losses,
                num_samples=settings.num_samples,
                iterations=settings.iterations,
                metric=settings.metric,
                mode=settings.mode,
                study_started_at=study.started_at,
            )
        )
        return {"verbose": 0, "progress_reporter": None, "callbacks": callbacks}
    table = tune.CLIReporter(
        metric_columns=[ITERATION, settings.objective, settings.metric],
        parameter_columns=["loss", *searched_by_any(settings, settings.losses)],
        sort_by_metric=True,  # by the objective: Tune hands the reporter TuneConfig's metric
        print_intermediate_tables=True,
        max_progress_rows=settings.num_samples * len(settings.losses),
    )
    return {"verbose": 2, "progress_reporter": table, "callbacks": callbacks}


def max_concurrent(settings: StudySettings) -> int:
    """The most trials of the study at once: ``--max-concurrent`` for each loss, or as many
    trials as the cluster's resources hold at once. Explicit, because Tune otherwise keeps one
    trial pending at a time for a searcher, which serialises short trials behind the start-up of
    each worker."""
    if settings.max_concurrent is not None:
        return settings.max_concurrent * len(settings.losses)
    resources = ray.cluster_resources()
    fits = [resources.get("CPU", 0.0) / settings.cpus_per_trial]
    if settings.gpus_per_trial > 0:
        fits.append(resources.get("GPU", 0.0) / settings.gpus_per_trial)
    return max(1, math.floor(min(fits)))


def sampler(settings: StudySettings) -> optuna.samplers.BaseSampler:
    if settings.sampler == RANDOM_SAMPLER:
        return optuna.samplers.RandomSampler(seed=settings.seed)
    # TPE's default of 10 random start-up trials would use up a whole small budget (8 per loss)
    # before TPE models anything: a third of the budget, at least 2, explores first.
    startup = min(10, max(2, settings.num_samples // 3))
    return optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=startup)


def scheduler(settings: StudySettings) -> TrialScheduler:
    """FIFO without early stopping; else one ASHA bracket per loss (:class:`PerLossScheduler`)."""
    if settings.scheduler == NO_SCHEDULER:
        return FIFOScheduler()
    return PerLossScheduler(
        {
            loss: BaselineKeepingASHA(
                time_attr="training_iteration",
                max_t=settings.steps_per_trial,
                grace_period=min(ASHA_GRACE_PERIOD, settings.steps_per_trial),
                reduction_factor=ASHA_REDUCTION_FACTOR,
            )
            for loss in settings.losses
        }
    )
