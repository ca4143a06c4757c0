"""The Ray Tune side of a study: connecting to Ray, one Tune experiment per loss (Optuna TPE with
the baseline first, ASHA, checkpoints, retries), resuming, and the per-loss summary."""

from __future__ import annotations

import logging
import math
import shlex
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
from optuna.trial import TrialState
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.logger import TBXLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from repmet.catalogue import LOSSES
from repmet.cli import WorkFailed
from repmet.config import TrainingConfig
from repmet.errors import ConfigError
from repmet.study_format import (
    FINISHED,
    INTERRUPTED,
    ITERATION,
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
    """A study stopped before every trial of a loss finished; ``--resume`` continues it."""


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
      ``study_format.TRIAL_FAILED`` (or a value that is not a finite number) is FAIL. A trial
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
            self._ot_study.set_metric_names([self.metric])

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if trial_id in self._ot_trials:
            self._ot_trials[trial_id].set_user_attr("tune_trial_id", trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        self._link(trial_id, result)
        self._report(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if error or trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return  # a trial that raised stays RUNNING for --resume
        result = result or {}
        self._link(trial_id, result)
        value, state = None, TrialState.PRUNED  # no result at all: stopped before reporting
        if result.get(TRIAL_FAILED) or (self.metric in result and not _finite(result[self.metric])):
            state = TrialState.FAIL
        elif self.metric in result:
            self._report(trial_id, result)  # the last result reaches the searcher only here
            if result.get(ITERATION, 0) >= result.get(self._total_key, math.inf):
                value, state = float(result[self.metric]), TrialState.COMPLETE
        self._ot_study.tell(self._ot_trials[trial_id], value, state=state)
        self._completed_trials.add(trial_id)

    def _report(self, trial_id: str, result: dict) -> None:
        value, step = result.get(self.metric), result.get(ITERATION)
        if result.get(TRIAL_FAILED) or not _finite(value) or step is None:
            return
        steps = self._reported.setdefault(trial_id, set())
        if int(step) not in steps:
            self._ot_trials[trial_id].report(float(value), int(step))
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
        self._ot_trials[trial_id].set_user_attr("trial_dir", folder)
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

    @property
    def settings(self) -> StudySettings:
        return self.manifest.settings


def connect(*, address: str | None, verbose: bool) -> bool:
    """Starts a local Ray, or joins ``address``; returns whether this call started it."""
    if ray.is_initialized():
        return False
    logging_level = logging.INFO if verbose else logging.ERROR
    try:
        ray.init(
            address=address or "local",
            log_to_driver=verbose,
            logging_level=logging_level,
            configure_logging=True,
        )
    except ConnectionError as error:
        raise ConfigError(f"cannot reach the Ray cluster at {address!r}: {error}") from None
    return True


def disconnect() -> None:
    ray.shutdown()


def check_resources(settings: StudySettings) -> None:
    """Refuses requests no node can satisfy, instead of leaving trials pending forever."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
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


def trial_folder_name(experiment_tag: str, trial_id: str) -> str:
    """``trial_<NNN>_<trial id>``, NNN the counter that starts Tune's ``experiment_tag``."""
    counter = experiment_tag.split("_", 1)[0]
    return f"trial_{int(counter):03d}_{trial_id}" if counter.isdigit() else trial_id


def run_losses(study: Study) -> int:
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
            results = fit_loss(study, loss, index)
        except KeyboardInterrupt:
            manifest.set_status(loss, INTERRUPTED)
            raise StudyInterrupted(
                f"interrupted during {loss}; continue the study with --resume"
            ) from None
        unfinished = settings.num_samples - results.num_terminated - results.num_errors
        complete = results.num_errors == 0 and unfinished <= 0
        manifest.set_status(loss, FINISHED if complete else INTERRUPTED)
        summaries.append(summarize(loss, results, settings))
        if not complete:
            print("\n".join(summaries))
            raise StudyInterrupted(
                f"{loss}: {results.num_errors} of {settings.num_samples} trials failed"
                + (f" and {unfinished} did not finish" if unfinished > 0 else "")
                + "; fix the cause and continue the study with --resume"
            )
    print("\n".join(summaries))
    print(f"Done in {format_duration(time.monotonic() - started)}. Results: {study.folder}")
    print(f"  curves:  tensorboard --logdir {shlex.quote(str(study.folder))}")
    print(f"  table:   python analysis/report.py {shlex.quote(str(study.folder))}")
    return 0


def fit_loss(study: Study, loss: str, index: int, *, verbose: bool = False) -> tune.ResultGrid:
    """Runs (or resumes) the Tune experiment of one loss; ``verbose`` shows Tune's own progress
    table instead of the study's progress line."""
    settings = study.settings
    path = study.folder / loss
    trainable = tune.with_resources(
        MetricLearningTrainable,
        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial},
    )
    if path.exists() and tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
        # Tune restores the RunConfig pickled when the loss started; what the run shows follows
        # this command line instead, and a study made before Tune's TensorBoard logger was
        # turned off gets it turned off too. (Not reachable through Ray Client: then the pickled
        # settings stay.)
        local = getattr(tuner, "_local_tuner", None)
        if local is not None:
            run_config = local.get_run_config()
            for name, value in reporting(study, loss, index, verbose=verbose).items():
                setattr(run_config, name, value)
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
            )
        )
        return {"verbose": 0, "progress_reporter": None, "callbacks": callbacks}
    table = tune.CLIReporter(
        metric_columns=[ITERATION, settings.objective, settings.metric],
        parameter_columns=list(settings.baseline.get(loss) or LOSSES.get(loss).searched),
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
    """One line per loss: trials run and the best configuration found."""
    try:
        best = results.get_best_result(settings.objective, settings.mode, scope="last")
    except RuntimeError:
        return f"{loss}: no trial reported {settings.objective}"
    value = best.metrics[settings.objective]
    searched = {k: v for k, v in best.config.items() if k in settings.baseline[loss]}
    shown = " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in searched.items()
    )
    return f"{loss}: {len(results)} trials, best {settings.metric} {value:.4f} ({shown})"
