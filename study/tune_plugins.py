"""What a study plugs into Ray Tune: its searchers (:class:`StudySearch`, with one
:class:`StudyOptunaSearch` per loss, inside a :class:`ResumableConcurrencyLimiter`), its scheduler
(:class:`PerLossScheduler`, with one :class:`BaselineKeepingASHA` per loss), the names of its trial
folders (:func:`trial_dirname`) and the callback that stands in for Tune's TensorBoard logger
(:class:`NoTensorBoard`).

Tune pickles these objects with a study's experiment and ``--resume`` unpickles them: studies
saved by earlier releases name them under :mod:`study.tuning`, which therefore keeps every one of
them importable (a test loads them by those names). Every use of Ray's or Optuna's private API goes
through :mod:`study.library_internals`."""

from __future__ import annotations

import math
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.logger import TBXLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from repmet.study_folder.layout import (
    EXPERIMENT_DIR,
    ITERATION,
    OPTUNA_FILE,
    TRIAL_FAILED,
    experiment_trial_name,
    trial_number,
)
from repmet.study_folder.trials import TrialStatus, trial_outcome
from study import library_internals as internals


class StudyOptunaSearch(OptunaSearch):
    """The Optuna records of a study's search.

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
      that raised stays RUNNING (Ray's OptunaSearch would close it as FAIL), so that
      ``--resume`` can continue it from its checkpoint and its final result still reaches Optuna.
    - User attributes link an Optuna trial to Tune: ``tune_trial_id``, and ``trial_dir``, the
      trial's folder relative to the study folder, as :class:`StudySearch` names it
      (:meth:`link`).

    Args:
        total_key: the key of a flattened result holding the iterations a full trial trains.
        others: as for ``OptunaSearch``.
    """

    def __init__(self, *args: Any, total_key: str = "config/iterations", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._total_key = total_key
        self._reported: dict[str, set[int]] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            internals.optuna_study(self).set_metric_names([self.metric])

    def follow(self, folder: Path) -> None:
        """Records the trials in the ``optuna.db`` of the study ``folder`` where it is now: an
        unpickled searcher names the database it was created with, and a study copied or moved
        since must record its trials in its own."""
        internals.reattach_storage(self, optuna_storage(folder))

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        trial = internals.optuna_trial(self, trial_id)
        if trial is not None:
            trial.set_user_attr("tune_trial_id", trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if internals.is_told(self, trial_id) or internals.optuna_trial(self, trial_id) is None:
            return
        self._report(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        trial = internals.optuna_trial(self, trial_id)
        if error or internals.is_told(self, trial_id) or trial is None:
            return  # a trial that raised stays RUNNING for --resume
        result = result or {}
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

    def link(self, trial_id: str, folder: str) -> None:
        """Names the folder of trial ``trial_id``, relative to the study folder, in its user
        attributes (``trial_dir``)."""
        internals.optuna_trial(self, trial_id).set_user_attr("trial_dir", folder)


#: Trial id -> the folder name :class:`StudySearch` gave the trial it has just suggested, for
#: :func:`trial_dirname`, which Tune calls when it creates that trial, in the same process. A
#: table rather than a reference to the searcher: Tune pickles the naming function into the saved
#: state of every trial.
_FOLDER_NAMES: dict[str, str] = {}


class StudySearch(Searcher):
    """The searches of every loss of a study, in one Tune experiment: one
    :class:`StudyOptunaSearch` per loss (its own Optuna study, named by the loss, in the one
    ``optuna.db``), each with its own budget of ``num_samples`` trials, its baseline first.

    Trials are handed out so that the losses run side by side: each new trial goes to the loss
    with the fewest trials so far among those with trials left (and, with ``max_concurrent``,
    fewer than that many running); ties go to the study's order of losses. A suggestion is the
    loss's whole ``TrainingConfig`` dict with the sampled values on top, so that ``params.json``
    says everything the trial trained with; its folder is ``<loss>-trial_<NNN>_<id>``, NNN counted
    per loss (001 = the loss's baseline). Results and completions go to the trial's loss's
    search. ``FINISHED`` once every loss has its trials.

    Args:
        searchers: per loss, in the study's order, its search.
        configs: per loss, the configuration every trial of the loss starts from.
        num_samples: trials per loss.
        max_concurrent: the most trials of one loss running at once (None: no limit of its own).
        metric, mode: the objective, as for every searcher.
    """

    #: The study folder of the run resuming this searcher (set by :func:`study.tuning.fit_study`,
    #: as is ``num_samples``, which ``--resume --num-samples`` may raise): the pickled state has
    #: those of the run that saved it, and :meth:`restore` keeps this run's.
    study_folder: Path | None = None

    def __init__(
        self,
        searchers: Mapping[str, StudyOptunaSearch],
        *,
        configs: Mapping[str, Mapping[str, Any]],
        num_samples: int,
        max_concurrent: int | None,
        metric: str,
        mode: str,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.searchers = dict(searchers)
        self.configs = {loss: dict(configs[loss]) for loss in self.searchers}
        self.num_samples = num_samples
        self.max_concurrent = max_concurrent
        self.created = dict.fromkeys(self.searchers, 0)
        #: Trial id -> (its loss, its number within the loss).
        self.trials: dict[str, tuple[str, int]] = {}
        self.live: set[str] = set()

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        return True  # every loss's search was built with its space, metric and mode

    def suggest(self, trial_id: str) -> dict | str | None:
        left = [loss for loss, count in self.created.items() if count < self.num_samples]
        if not left:
            return Searcher.FINISHED
        running = [loss for loss, _ in (self.trials[t] for t in self.live)]
        ready = [
            loss
            for loss in left
            if self.max_concurrent is None or running.count(loss) < self.max_concurrent
        ]
        if not ready:
            return None  # asked again once a trial ends
        loss = min(ready, key=self.created.__getitem__)
        suggestion = self.searchers[loss].suggest(trial_id)
        if not isinstance(suggestion, dict):
            return suggestion
        self.created[loss] += 1
        self.trials[trial_id] = (loss, self.created[loss])
        self.live.add(trial_id)
        name = experiment_trial_name(loss, self.created[loss], trial_id)
        _FOLDER_NAMES[trial_id] = name
        self.searchers[loss].link(trial_id, f"{EXPERIMENT_DIR}/{name}")
        return {**self.configs[loss], **suggestion}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.trials:
            self.searchers[self.trials[trial_id][0]].on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        self.live.discard(trial_id)
        if trial_id in self.trials:
            search = self.searchers[self.trials[trial_id][0]]
            search.on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as stream:
            pickle.dump(self.__dict__.copy(), stream)

    def restore(self, checkpoint_path: str) -> None:
        """Restores the pickled state, keeping this run's trial budget and following the study
        folder where it is now (a study copied or moved since records its trials in its own
        ``optuna.db``)."""
        folder, budget = self.study_folder, self.num_samples
        with open(checkpoint_path, "rb") as stream:
            self.__dict__.update(pickle.load(stream))
        self.study_folder, self.num_samples = folder, budget
        if folder is not None:
            for search in self.searchers.values():
                search.follow(folder)


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


def trial_dirname(trial: Trial) -> str:
    """Short trial folder names, ``<loss>-trial_<NNN>_<id>`` as :class:`StudySearch` chose them
    (Tune's default repeats every parameter)."""
    return _FOLDER_NAMES[trial.trial_id]


def optuna_storage(folder: Path) -> optuna.storages.RDBStorage:
    folder.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{folder / OPTUNA_FILE}")


class BaselineKeepingASHA(ASHAScheduler):
    """ASHA, except that a loss's first trial, its default configuration (the baseline every
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
    """True for a loss's first trial (``<loss>-trial_001_...``): the loss's searcher proposes the
    baseline first (``points_to_evaluate``)."""
    return bool(trial.path) and trial_number(Path(trial.path).name) == 1


class PerLossScheduler(FIFOScheduler):
    """Hands each trial to the scheduler of its loss (``config["loss"]``), so that ASHA judges a
    trial only against the trials of its own loss, as when each loss had its experiment. Which
    trial runs next stays first come, first served (FIFO, as in ASHA)."""

    def __init__(self, schedulers: Mapping[str, TrialScheduler]) -> None:
        super().__init__()
        self.schedulers = dict(schedulers)

    @property
    def supports_buffered_results(self) -> bool:
        return all(s.supports_buffered_results for s in self.schedulers.values())

    def _of(self, trial: Trial) -> TrialScheduler:
        return self.schedulers[trial.config["loss"]]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        accepted = [s.set_search_properties(metric, mode, **spec) for s in self.schedulers.values()]
        return super().set_search_properties(metric, mode, **spec) and all(accepted)

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"{loss}: {s.debug_string()}" for loss, s in self.schedulers.items())
