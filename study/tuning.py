"""The Ray Tune side of a study: connecting to Ray, one Tune experiment per loss (Optuna TPE with
the baseline first, ASHA, checkpoints, retries), resuming, and how each loss ended.

What the study prints is :mod:`study.console`'s; every use of Ray's or Optuna's private API goes
through :mod:`study.library_internals`. The classes below stay here because Tune pickles them
with each experiment under this module's name, and ``--resume`` unpickles them from it."""

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
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import ray
from optuna.trial import TrialState
from ray import tune
from ray.exceptions import RayError
from ray.tune.error import TuneError
from ray.tune.experiment import Trial
from ray.tune.logger import TBXLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from repmet.cli import WorkFailed
from repmet.config import TrainingConfig
from repmet.errors import ConfigError
from repmet.study_folder.layout import (
    DONE,
    ITERATION,
    OPTUNA_FILE,
    TRIAL_FAILED,
    StudyFolderError,
    trial_counter,
    trial_folder_name,
)
from repmet.study_folder.manifest import FINISHED, INTERRUPTED, RUNNING, Manifest, StudySettings
from repmet.study_folder.searched import searched_parameters
from repmet.study_folder.trials import TrialStatus, trial_outcome
from repmet.study_folder.trials_csv import write_trials_csv
from repmet.study_options import NO_SCHEDULER, RANDOM_SAMPLER
from repmet.training import load_splits
from search_spaces import SEARCH_SPACES, SpaceContext
from study import library_internals as internals
from study.console import errored_message, first_line, study_done, study_header, summarize
from study.progress import StudyProgress
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


class ResumableOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch, except that a trial that fails stays open (RUNNING) in the Optuna
    study instead of being closed as FAIL: ``--resume`` continues such trials from their
    checkpoints, and their final result must then still reach Optuna."""

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if error or internals.is_told(self, trial_id):
            return
        super().on_trial_complete(trial_id, result=result, error=error)

    #: The study folder of the run resuming this searcher (set by :func:`fit_loss`): the
    #: pickled state names the folder the searcher was created in.
    study_folder: Path | None = None

    def restore(self, checkpoint_path: str) -> None:
        """Restores the pickled state, then follows the study folder where it is now: a study
        copied or moved since must record its trials in its own ``optuna.db``, not in the one
        the searcher was created with."""
        folder = self.study_folder
        super().restore(checkpoint_path)
        self.study_folder = folder
        if folder is None:
            return
        internals.reattach_storage(self, optuna_storage(folder))
        if hasattr(self, "_experiment"):
            self._experiment = str(folder / internals.optuna_study(self).study_name)


class StudyOptunaSearch(ResumableOptunaSearch):
    """The Optuna records of a study's search (new studies; ``ResumableOptunaSearch`` stays for the
    searchers pickled by earlier ones).

    - The study's metric is named after the objective (``val/best/<select>``).
    - Intermediate values are the objective (the best value so far) keyed by the trial's training
      iteration, the x axis of every other record of the study. Best-so-far, not the value of
      each step: a trial that is pruned is told to Optuna with its last intermediate value, which
      is then exactly what ASHA judged it by, and is comparable with the values of completed
      trials (their best step); TPE ranks pruned trials by their last step, then by that value.
    - A trial that ran all its iterations is COMPLETE with the objective of its last result (its
      best step); one that the scheduler stopped earlier is PRUNED; one whose last result carries
      ``layout.TRIAL_FAILED`` (or a value that is not a finite number) is FAIL, as
      :func:`repmet.study_folder.trials.trial_outcome` decides for every reader. A trial
      that raised stays RUNNING, as in ``ResumableOptunaSearch``, so that ``--resume`` can finish
      it.
    - User attributes link an Optuna trial to Tune: ``tune_trial_id``, and ``trial_dir``, the
      trial's folder relative to the study folder (``<loss>/trial_<NNN>_<id>``).

    Args:
        experiment: the loss's Tune experiment folder (``<study>/<loss>``).
        total_key: the key of a flattened result holding the iterations a full trial trains.
        others: as for ``OptunaSearch``.
    """

    def __init__(
        self, *args: Any, experiment: str, total_key: str = "config/iterations", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._experiment = str(experiment)
        self._total_key = total_key
        self._reported: dict[str, set[int]] = {}
        self._linked: set[str] = set()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            internals.optuna_study(self).set_metric_names([self.metric])

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        trial = internals.optuna_trial(self, trial_id)
        if trial is not None:
            trial.set_user_attr("tune_trial_id", trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if internals.is_told(self, trial_id) or internals.optuna_trial(self, trial_id) is None:
            return
        self._link(trial_id, result)
        self._report(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        trial = internals.optuna_trial(self, trial_id)
        if error or internals.is_told(self, trial_id) or trial is None:
            return  # a trial that raised stays RUNNING for --resume
        result = result or {}
        self._link(trial_id, result)
        outcome = trial_outcome(result, iterations=result.get(self._total_key, math.inf))
        value, state = None, TrialState.PRUNED  # no result at all: stopped before reporting
        if outcome is TrialStatus.FAILED or (
            self.metric in result and not _finite(result[self.metric])
        ):
            state = TrialState.FAIL
        elif self.metric in result:
            self._report(trial_id, result)  # the last result reaches the searcher only here
            if outcome is TrialStatus.COMPLETED:
                value, state = float(result[self.metric]), TrialState.COMPLETE
        internals.optuna_study(self).tell(trial, value, state=state)
        internals.mark_told(self, trial_id)

    def _report(self, trial_id: str, result: dict) -> None:
        value, step = result.get(self.metric), result.get(ITERATION)
        if result.get(TRIAL_FAILED) or not _finite(value) or step is None:
            return
        steps = self._reported.setdefault(trial_id, set())
        if int(step) not in steps:
            internals.optuna_trial(self, trial_id).report(float(value), int(step))
            steps.add(int(step))

    def _link(self, trial_id: str, result: dict) -> None:
        """Names the trial's folder in its user attributes, once it is known: from the last
        result's ``experiment_tag``, else from the folders already in storage."""
        if trial_id in self._linked:
            return
        experiment = Path(self._experiment)
        tag = result.get("experiment_tag")
        if tag:
            name = trial_folder_name(str(tag), trial_id)
        else:
            found = sorted(experiment.glob(f"*_{trial_id}"))
            if not found:
                return
            name = found[0].name
        folder = f"{experiment.name}/{name}"
        internals.optuna_trial(self, trial_id).set_user_attr("trial_dir", folder)
        self._linked.add(trial_id)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class NoTensorBoard(TBXLoggerCallback):
    """Takes the place of Tune's TensorBoard logger, which Tune adds to every run unless one is
    given, and writes nothing: the trainable writes the trial's TensorBoard records itself
    (``trainables.records``), and Tune's would add a second run per trial full of ``ray/tune/*``
    tags. Tune's JSON and CSV loggers (``result.json``, ``progress.csv``, ``params.json``) stay."""

    def __init__(self) -> None:  # no tensorboardX writers
        pass

    def log_trial_start(self, trial: Trial) -> None:
        pass

    def log_trial_result(self, iteration: int, trial: Trial, result: dict) -> None:
        pass

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        pass


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


def trial_dirname(trial: Trial) -> str:
    """Short trial folder names in creation order (Tune's default repeats every parameter)."""
    return trial_folder_name(trial.experiment_tag, trial.trial_id)


def run_losses(study: Study, *, verbose: bool = False) -> int:
    """Runs the Tune experiment of every loss not finished yet, one after another.

    A loss ends in one of three ways. Every planned trial ended (finished, stopped early, or
    failed for its own configuration): the loss is finished and the next one starts. A trial
    raised an error after its retries: the study stops (:class:`StudyFailed`). Ctrl-C left trials
    unfinished: the study stops (:class:`StudyInterrupted`). Either way ``--resume`` continues.
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
    summaries = []
    for index, loss in enumerate(settings.losses):
        if manifest.status[loss] == FINISHED:
            summaries.append(f"{loss}: finished earlier")
            continue
        manifest.set_status(loss, RUNNING)
        try:
            extend_experiment(study.folder / loss, settings.num_samples)
            results = fit_loss(study, loss, index, verbose=verbose)
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
            raise StudyFailed(errored_message(loss, outcome.errored))
        if outcome.unfinished:
            manifest.set_status(loss, INTERRUPTED)
            print("\n".join(summaries))
            raise StudyInterrupted(
                f"interrupted during {loss} ({outcome.ended} of {settings.num_samples} trials "
                "finished); continue the study with --resume"
            )
        manifest.set_status(loss, FINISHED)
        record_trials(study.folder)
        summaries.append(summarize(loss, results, settings))
    print("\n".join(summaries))
    print(study_done(study.folder, time.monotonic() - started))
    return 0


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
        outcomes = [
            trial_outcome(result.metrics, iterations=(result.config or {}).get("iterations", 0))
            for result in results
            if result.error is None and result.metrics.get(DONE)
        ]
        failed = sum(outcome is TrialStatus.FAILED for outcome in outcomes)
        ended = len(outcomes) + len(errored)
        return cls(ended=ended, failed=failed, errored=errored, unfinished=max(planned - ended, 0))


def extend_experiment(path: Path, num_samples: int) -> None:
    """Lets the Tune experiment at ``path`` (if any) create trials up to ``num_samples``
    (:func:`study.library_internals.raise_planned_trials`)."""
    try:
        internals.raise_planned_trials(path, num_samples)
    except internals.SearchStateUnreadable as error:
        raise StudyFailed(f"cannot continue the Tune experiment at {path}: {error}") from None


def fit_loss(study: Study, loss: str, index: int, *, verbose: bool = False) -> tune.ResultGrid:
    """Runs (or resumes) the Tune experiment of one loss; ``verbose`` shows Tune's own progress
    table instead of the study's progress line."""
    settings = study.settings
    path = study.folder / loss
    trainable = tune.with_resources(
        tune.with_parameters(MetricLearningTrainable, data=shared_data(settings)),
        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial},
    )
    if path.exists() and tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
        # Tune restores the RunConfig pickled when the loss started; what the run shows follows
        # this command line instead, and a study made before Tune's TensorBoard logger was
        # turned off gets it turned off too. (Not reachable through Ray Client: then the pickled
        # settings stay.)
        run_config = internals.restored_run_config(tuner)
        if run_config is not None:
            for name, value in reporting(study, loss, index, verbose=verbose).items():
                setattr(run_config, name, value)
            searcher = internals.restored_searcher(tuner)
            if isinstance(searcher, ResumableOptunaSearch):
                searcher.study_folder = study.folder
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
                StudyOptunaSearch(
                    space=SEARCH_SPACES.get(settings.space).objective(loss, study.context),
                    metric=settings.objective,
                    mode=settings.mode,
                    points_to_evaluate=[dict(settings.baseline[loss])],
                    sampler=sampler(settings),
                    storage=storage,
                    study_name=loss,
                    experiment=str(path),
                ),
                max_concurrent=max_concurrent(settings),
            ),
            scheduler=scheduler(settings),
            num_samples=settings.num_samples,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
            trial_name_creator=trial_dirname,  # Tune's table and logs name trials by folder
        ),
        run_config=tune.RunConfig(
            name=loss,
            storage_path=str(study.folder),
            **reporting(study, loss, index, verbose=verbose),
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


def shared_data(settings: StudySettings) -> tuple[tuple[Any, ...], Any]:
    """The data set every trial of the study trains on, as the driver loaded it (the copy it
    checked the study against), for the trainables (see ``MetricLearningTrainable.setup``)."""
    config = TrainingConfig.from_dict(settings.fixed)
    return config.data_key(), load_splits(config, cached=True)


def reporting(study: Study, loss: str, index: int, *, verbose: bool) -> dict[str, Any]:
    """The ``RunConfig`` fields that decide what a loss's run shows and logs.

    Always Tune's JSON and CSV results (``result.json``, ``progress.csv``, ``params.json``) and
    never Tune's TensorBoard logger (the trainable writes the trial's records). Quiet: the study's
    one-line progress display. ``verbose``: Tune's own classic output (with
    ``RAY_AIR_NEW_OUTPUT=0``, as ``study/run.py`` sets it) with its trial table, every searched
    parameter and the objective, at each status report; the one-line display, which redraws its
    line, would garble it and is left out.
    """
    settings = study.settings
    callbacks: list[tune.Callback] = [NoTensorBoard()]
    if not verbose:
        callbacks.append(
            StudyProgress(
                loss=loss,
                loss_index=index,
                loss_count=len(settings.losses),
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
        parameter_columns=list(searched_parameters(settings, loss)),
        sort_by_metric=True,  # by the objective: Tune hands the reporter TuneConfig's metric
        print_intermediate_tables=True,
        max_progress_rows=settings.num_samples,
    )
    return {"verbose": 2, "progress_reporter": table, "callbacks": callbacks}


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
    if settings.sampler == RANDOM_SAMPLER:
        return optuna.samplers.RandomSampler(seed=settings.seed)
    # TPE's default of 10 random start-up trials would use up a whole small budget (8 per loss)
    # before TPE models anything: a third of the budget, at least 2, explores first.
    startup = min(10, max(2, settings.num_samples // 3))
    return optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=startup)


class BaselineKeepingASHA(ASHAScheduler):
    """ASHA, except that the loss's first trial, its default configuration (the baseline every
    search starts from), is never stopped early.

    Its results still fill ASHA's rungs, so the other trials are judged against it as before. A
    search therefore never ends worse than the defaults it started from. An early cut judges on
    the noisy errors of the first evaluations: on digits-distorted, plain ASHA stopped the default
    configuration in 2 of 10 searches (``benchmarks/bench_search.py``, seed 3) although it ended
    as the best trial of the same searches without early stopping.
    """

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action == self.STOP and is_baseline(trial):
            return self.CONTINUE if internals.within_time_budget(self, result) else action
        return action


def is_baseline(trial: Trial) -> bool:
    """True for a loss's first trial (``trial_001_...``): the searcher proposes the baseline
    first (``points_to_evaluate``)."""
    return trial_counter(trial.experiment_tag) == 1


def scheduler(settings: StudySettings) -> ASHAScheduler | FIFOScheduler:
    if settings.scheduler == NO_SCHEDULER:
        return FIFOScheduler()
    return BaselineKeepingASHA(
        time_attr="training_iteration",
        max_t=settings.steps_per_trial,
        grace_period=min(ASHA_GRACE_PERIOD, settings.steps_per_trial),
        reduction_factor=ASHA_REDUCTION_FACTOR,
    )
