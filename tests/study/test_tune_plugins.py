"""What the study plugs into Tune, without a running Ray."""

from __future__ import annotations

import inspect
import pickle


def test_what_earlier_releases_pickled_under_study_tuning_still_loads() -> None:
    """A study saved by an earlier release names its searchers, schedulers, callback and folder
    naming function as ``study.tuning.<name>`` in Tune's pickles: each must load as the object
    that :mod:`study.tune_plugins` defines now."""
    from study import tune_plugins

    pickled = [
        name
        for name, obj in vars(tune_plugins).items()
        if inspect.isclass(obj) and obj.__module__ == tune_plugins.__name__
    ]
    assert {"StudySearch", "StudyOptunaSearch", "PerLossScheduler", "NoTensorBoard"} <= set(pickled)
    for name in [*pickled, "trial_dirname"]:
        reference = f"cstudy.tuning\n{name}\n.".encode()  # a pickle's reference to a global
        assert pickle.loads(reference) is getattr(tune_plugins, name), name


def test_asha_never_stops_the_baseline_but_judges_the_others_against_it() -> None:
    """The first trial (the loss's defaults) runs out even when it is the worst at a rung; a later
    trial as bad at the same rung is stopped, and the baseline's value counts in the rung."""
    from types import SimpleNamespace

    from study.tune_plugins import BaselineKeepingASHA

    asha = BaselineKeepingASHA(
        time_attr="training_iteration", max_t=9, grace_period=1, reduction_factor=3
    )
    asha.set_search_properties(metric="val/best/error_simple", mode="min")
    trials = [
        SimpleNamespace(trial_id=f"t{n}", path=f"/study/trials/magnet-trial_{n:03d}_t{n}")
        for n in range(1, 5)
    ]
    for trial in trials:
        asha.on_trial_add(None, trial)

    def result(trial, step: int, value: float) -> str:
        row = {"training_iteration": step, "val/best/error_simple": value}
        return asha.on_trial_result(None, trial, row)

    assert result(trials[1], 1, 0.10) == asha.CONTINUE  # first at the rung
    assert result(trials[2], 1, 0.09) == asha.CONTINUE  # better: goes on
    assert result(trials[0], 1, 0.50) == asha.CONTINUE  # the baseline, worst: goes on
    assert result(trials[3], 1, 0.50) == asha.STOP  # as bad, not the baseline: stopped
    assert result(trials[0], 3, 0.50) == asha.CONTINUE
    assert result(trials[0], 9, 0.40) == asha.STOP  # its last step ends it as for any trial
