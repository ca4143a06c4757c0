"""Every use the suite makes of Ray Tune's and Optuna's private API, behind small named functions.

Nothing else in ``study/``, ``trainables/`` or ``analysis/`` reads or writes a private attribute of
a Ray or Optuna object; ``RELIED_ON`` lists each one, and ``tests/study/test_library_internals.py``
checks them on the installed classes, so that an upgrade that drops one fails there with its name
instead of in the middle of a resumed study. ``pyproject.toml`` bounds ``ray[tune]`` and
``optuna`` at the versions tested for the same reason.

For each use, why it is needed and what a public alternative would need:

- ``OptunaSearch._ot_study`` (the Optuna study behind Ray's searcher): the study's metric names
  (``Study.set_metric_names``) and ``Study.tell`` with the state a trial ended in (COMPLETE, PRUNED
  or FAIL; Ray's searcher only knows COMPLETE and FAIL). Public alternative: a read-only
  ``OptunaSearch.study`` property, and a hook to choose the state told for a completed trial.
- ``OptunaSearch._ot_trials`` (Tune trial id -> ``optuna.Trial``): the user attributes that link an
  Optuna trial to its Tune trial and folder, and the intermediate values keyed by the training
  iteration. Public alternative: ``OptunaSearch.optuna_trial(trial_id)``.
- ``OptunaSearch._completed_trials`` (the Tune trial ids already told to Optuna): a trial that
  raised must stay RUNNING (``--resume`` finishes it), and a trial must be told once. Public
  alternative: an option to leave errored trials open, and ``is_completed(trial_id)``.
- ``OptunaSearch._storage``, ``Study._storage``, ``_CachedStorage._backend`` and
  ``Trial._trial_id``: a resumed searcher is unpickled with the storage URL of the folder it was
  created in; a study copied or moved since must write to its own ``optuna.db``, so the searcher is
  rebound to it, its open trials included. Public alternative: ``OptunaSearch.restore`` taking a
  storage to reattach to (and a public storage URL on ``optuna.Study``).
- ``Tuner._local_tuner`` and ``TunerInternal._tune_config`` / ``TunerInternal.get_run_config``:
  ``Tuner.restore`` brings back the ``RunConfig`` and searcher pickled when the study started;
  what a resumed run shows follows the new command line (verbose or not, the progress callback),
  and the searcher learns where the study folder is now. Public alternative: ``Tuner.restore``
  accepting a ``run_config`` (it accepts only ``param_space`` and the trainable) and a way to reach
  the restored search algorithm. Through Ray Client there is no local tuner: the pickled settings
  stay.
- ``ASHAScheduler._time_attr`` and ``._max_t``: the baseline trial is never stopped early but must
  still end at the scheduler's budget. Public alternative: read-only properties (the scheduler is
  built with both values, but a restored one is unpickled, so keeping our own copies would be a
  second truth).
- Tune's pickled search-generator state (``search_gen_state-*.json``, keys ``total_samples`` and
  ``finished``): ``Tuner.restore`` keeps the ``num_samples`` of the first run, so a resumed study
  that plans more trials per loss raises the total in the newest state file. Public alternative:
  ``Tuner.restore(..., num_samples=...)`` or a ``ResumeConfig`` field for it.
- The one experiment of a study (:class:`study.tune_plugins.StudySearch` and ``PerLossScheduler``)
  relies on public behaviour that Tune does not promise in words: the search generator asks
  ``Searcher.suggest(trial_id)`` and then, in the same process, creates that trial, calling the
  ``trial_dirname_creator`` with it (the folder name is chosen at the suggestion); a searcher
  restored by ``Tuner.restore`` is the object pickled with the tuner, its state reloaded in place
  by ``Searcher.restore`` (so the run's budget and folder set on it before ``fit`` can be kept);
  and a wrapping scheduler may hand every trial hook to another scheduler, keeping FIFO's
  ``choose_trial_to_run``. ``RELIED_ON`` lists the hooks overridden.
- ``TBXLoggerCallback`` (subclassed without its ``__init__``) and ``ConcurrencyLimiter.live_trials``
  are public names whose behaviour the study relies on: Tune adds its TensorBoard logger unless an
  instance of that class is among the callbacks, and the limiter forgets a trial that failed.
  ``RELIED_ON`` lists them too, so that the test covers every name :mod:`study.tune_plugins`
  overrides or reads beyond the documented interface.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import optuna
import ray.cloudpickle
from ray import tune
from ray.tune.search.search_generator import SearchGenerator

from study.console import first_line

#: Owner (import path of the class) -> the names of it this module reads, writes or overrides, and
#: those :mod:`study.tune_plugins` overrides; checked on the installed classes by the tests.
RELIED_ON: dict[str, tuple[str, ...]] = {
    "ray.tune.search.optuna.OptunaSearch": (
        "_ot_study",
        "_ot_trials",
        "_completed_trials",
        "_storage",
        "on_trial_complete",
        "on_trial_result",
        "suggest",
    ),
    "optuna.study.Study": ("_storage",),
    "optuna.storages._cached_storage._CachedStorage": ("_backend",),
    "optuna.trial.Trial": ("_trial_id",),
    "ray.tune.Tuner": ("_local_tuner",),
    "ray.tune.impl.tuner_internal.TunerInternal": ("_tune_config", "get_run_config"),
    "ray.tune.schedulers.ASHAScheduler": ("_time_attr", "_max_t", "on_trial_result"),
    "ray.tune.search.search_generator.SearchGenerator": ("CKPT_FILE_TMPL", "get_state"),
    "ray.tune.logger.TBXLoggerCallback": ("log_trial_start", "log_trial_result", "log_trial_end"),
    "ray.tune.search.ConcurrencyLimiter": ("live_trials", "searcher", "on_trial_complete"),
    "ray.tune.search.Searcher": (
        "FINISHED",
        "suggest",
        "on_trial_result",
        "on_trial_complete",
        "set_search_properties",
        "save",
        "restore",
    ),
    "ray.tune.schedulers.FIFOScheduler": (
        "set_search_properties",
        "supports_buffered_results",
        "on_trial_add",
        "on_trial_error",
        "on_trial_result",
        "on_trial_complete",
        "on_trial_remove",
        "choose_trial_to_run",
        "debug_string",
    ),
}
#: The keys of Tune's pickled search-generator state that :func:`raise_planned_trials` rewrites.
SEARCH_STATE_KEYS = ("total_samples", "finished")


class SearchStateUnreadable(Exception):
    """Tune's pickled search-generator state of an experiment cannot be read."""


def optuna_study(searcher: Any) -> optuna.Study:
    """The Optuna study behind Ray's ``OptunaSearch``."""
    return searcher._ot_study


def optuna_trial(searcher: Any, trial_id: str) -> optuna.Trial | None:
    """The Optuna trial that ``OptunaSearch`` asked for the Tune trial ``trial_id``, if any."""
    return searcher._ot_trials.get(trial_id)


def is_told(searcher: Any, trial_id: str) -> bool:
    """Whether ``OptunaSearch`` has told Optuna how the Tune trial ``trial_id`` ended."""
    return trial_id in searcher._completed_trials


def mark_told(searcher: Any, trial_id: str) -> None:
    """Records that Optuna was told how ``trial_id`` ended, as ``OptunaSearch`` does itself."""
    searcher._completed_trials.add(trial_id)


def reattach_storage(searcher: Any, storage: optuna.storages.RDBStorage) -> None:
    """Points an unpickled ``OptunaSearch`` at ``storage`` (the study folder's own ``optuna.db``)
    when it was created with another one, its open trials included."""
    study = optuna_study(searcher)
    # Optuna wraps an RDBStorage in a cache that keeps it as ``_backend``.
    used = getattr(study._storage, "_backend", study._storage)
    if getattr(used, "url", None) == storage.url:
        return
    moved = optuna.load_study(study_name=study.study_name, storage=storage, sampler=study.sampler)
    searcher._ot_study, searcher._storage = moved, storage
    searcher._ot_trials = {
        trial_id: optuna.Trial(moved, trial._trial_id)
        for trial_id, trial in searcher._ot_trials.items()
    }


def restored_run_config(tuner: tune.Tuner) -> tune.RunConfig | None:
    """The ``RunConfig`` a restored ``Tuner`` will run with (to be changed in place), or None
    through Ray Client, where the tuner runs remotely."""
    local = getattr(tuner, "_local_tuner", None)
    return local.get_run_config() if local is not None else None


def restored_searcher(tuner: tune.Tuner) -> Any:
    """The searcher a restored ``Tuner`` will use (inside its ``ConcurrencyLimiter``, if any), or
    None through Ray Client."""
    local = getattr(tuner, "_local_tuner", None)
    search_alg = getattr(getattr(local, "_tune_config", None), "search_alg", None)
    return getattr(search_alg, "searcher", search_alg)


def within_time_budget(scheduler: Any, result: dict) -> bool:
    """Whether ``result`` comes before the end of an ASHA scheduler's budget (its ``max_t`` in its
    ``time_attr``)."""
    return result.get(scheduler._time_attr, 0) < scheduler._max_t


def raise_planned_trials(path: Path, num_samples: int) -> None:
    """Lets the Tune experiment at ``path`` (if any) create trials up to ``num_samples``.

    ``Tuner.restore`` keeps the number of samples of the first run: its search generator's state
    (``search_gen_state-*.json``, the newest file of which Tune restores) counts the trials it
    created against that total. Raising the total there makes the restored experiment ask the
    searcher (Optuna, with its whole history) for the extra trials.

    Raises:
        SearchStateUnreadable: the newest state file cannot be read; the message names it.
    """
    states = sorted(path.glob(SearchGenerator.CKPT_FILE_TMPL.format("*")))
    if not states:
        return
    newest = states[-1]
    total_key, finished_key = SEARCH_STATE_KEYS
    try:
        with newest.open("rb") as stream:
            state: dict[str, Any] = ray.cloudpickle.load(stream)
        total = int(state[total_key])
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as error:
        raise SearchStateUnreadable(
            f"its state {newest.name} is unreadable ({type(error).__name__}: {first_line(error)})"
        ) from None
    if total >= num_samples:
        return
    state[total_key] = num_samples
    state[finished_key] = False
    temporary = newest.with_name(f".{newest.name}.tmp")
    with temporary.open("wb") as stream:
        ray.cloudpickle.dump(state, stream)
    os.replace(temporary, newest)
