"""The private Ray Tune and Optuna names the study relies on (``study.library_internals``) exist on
the installed versions, do what the study needs, and are used nowhere else. No Ray is started."""

from __future__ import annotations

import importlib
import re
import shutil
from importlib.metadata import version
from pathlib import Path
from typing import Any

import optuna
import pytest
from packaging.requirements import Requirement

from study import library_internals as internals

ROOT = Path(__file__).resolve().parents[2]


def _owner(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _searcher(storage: Any = None) -> Any:
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    return OptunaSearch(space=space, metric="m", mode="min", storage=storage, study_name="loss")


def _examples(tmp_path: Path) -> dict[str, Any]:
    """One object of each class in ``RELIED_ON``, built the way the study builds them (instance
    attributes exist only once ``__init__`` ran)."""
    from ray import tune
    from ray.tune.logger import TBXLoggerCallback
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.search_generator import SearchGenerator

    searcher = _searcher()
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    tuner = tune.Tuner(lambda config: None, run_config=tune.RunConfig(storage_path=str(tmp_path)))
    return {
        "ray.tune.search.optuna.OptunaSearch": searcher,
        "optuna.study.Study": study,
        "optuna.storages._cached_storage._CachedStorage": study._storage,
        "optuna.trial.Trial": study.ask(),
        "ray.tune.Tuner": tuner,
        "ray.tune.impl.tuner_internal.TunerInternal": tuner._local_tuner,
        "ray.tune.schedulers.ASHAScheduler": ASHAScheduler(time_attr="training_iteration"),
        "ray.tune.search.search_generator.SearchGenerator": SearchGenerator(_searcher()),
        "ray.tune.logger.TBXLoggerCallback": TBXLoggerCallback,
        "ray.tune.search.ConcurrencyLimiter": ConcurrencyLimiter(_searcher(), max_concurrent=1),
        "ray.tune.search.Searcher": _searcher(),
        "ray.tune.schedulers.FIFOScheduler": FIFOScheduler(),
    }


def test_every_name_the_study_relies_on_exists_on_the_installed_classes(tmp_path) -> None:
    examples = _examples(tmp_path)
    assert set(examples) == set(internals.RELIED_ON), "a RELIED_ON owner has no example here"
    missing = []
    for owner, names in internals.RELIED_ON.items():
        example, cls = examples[owner], _owner(owner)
        assert example is cls or isinstance(example, cls), f"the example of {owner} is not one"
        package = owner.split(".", 1)[0]
        installed = version("ray" if package == "ray" else package)
        missing += [
            f"{owner}.{name} is gone in the installed {package} {installed}"
            for name in names
            if not hasattr(example, name)
        ]
    assert not missing, (
        "; ".join(missing) + ": study/library_internals.py relies on it (its docstring says why); "
        "adapt that module, then the version bound in pyproject.toml"
    )


def test_the_pickled_search_state_has_the_keys_the_study_rewrites(tmp_path) -> None:
    """A resumed study that plans more trials raises the total in Tune's own state file: the
    restored generator then plans the new total and is no longer finished."""
    from ray.tune.search.search_generator import SearchGenerator

    saved = SearchGenerator(_searcher())
    assert set(internals.SEARCH_STATE_KEYS) <= set(saved.get_state())
    saved.set_finished()
    saved.save_to_dir(str(tmp_path), "2024-01-01_00-00-00")
    before = SearchGenerator(_searcher())
    before.restore_from_dir(str(tmp_path))
    assert before.is_finished()

    internals.raise_planned_trials(tmp_path, 12)
    restored = SearchGenerator(_searcher())
    restored.restore_from_dir(str(tmp_path))
    assert restored.total_samples == 12
    assert not restored.is_finished()
    internals.raise_planned_trials(tmp_path, 5)  # fewer than planned: left as it is
    again = SearchGenerator(_searcher())
    again.restore_from_dir(str(tmp_path))
    assert again.total_samples == 12


def test_an_unreadable_search_state_is_named(tmp_path) -> None:
    (tmp_path / "search_gen_state-2024-01-01_00-00-00.json").write_bytes(b"not a pickle")
    with pytest.raises(internals.SearchStateUnreadable, match="search_gen_state-2024"):
        internals.raise_planned_trials(tmp_path, 3)
    internals.raise_planned_trials(tmp_path / "absent", 3)  # no experiment yet: nothing to do


def test_a_moved_study_records_its_open_trials_in_its_own_database(tmp_path) -> None:
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    searcher = _searcher(optuna.storages.RDBStorage(f"sqlite:///{old}"))
    searcher.suggest("tune_a")
    shutil.copy(old, new)
    storage = optuna.storages.RDBStorage(f"sqlite:///{new}")

    internals.reattach_storage(searcher, storage)
    internals.optuna_trial(searcher, "tune_a").report(0.25, 3)
    internals.optuna_study(searcher).tell(internals.optuna_trial(searcher, "tune_a"), 0.25)

    def trials(path: Path) -> list[optuna.trial.FrozenTrial]:
        return optuna.load_study(study_name="loss", storage=f"sqlite:///{path}").trials

    assert [(t.state, t.value, t.intermediate_values) for t in trials(new)] == [
        (optuna.trial.TrialState.COMPLETE, 0.25, {3: 0.25})
    ]
    assert [t.state for t in trials(old)] == [optuna.trial.TrialState.RUNNING]
    internals.reattach_storage(searcher, storage)  # already there: the same study object stays
    assert internals.optuna_study(searcher).trials[0].value == 0.25


def test_told_trials_and_the_time_budget_are_read_as_tune_keeps_them() -> None:
    from ray.tune.schedulers import ASHAScheduler

    searcher = _searcher()
    searcher.suggest("tune_a")
    assert internals.optuna_trial(searcher, "tune_b") is None
    assert not internals.is_told(searcher, "tune_a")
    searcher.on_trial_complete("tune_a", {"m": 0.5})
    assert internals.is_told(searcher, "tune_a")
    internals.mark_told(searcher, "tune_c")
    assert internals.is_told(searcher, "tune_c")

    asha = ASHAScheduler(time_attr="training_iteration", max_t=9)
    assert internals.within_time_budget(asha, {"training_iteration": 8})
    assert not internals.within_time_budget(asha, {"training_iteration": 9})
    assert internals.within_time_budget(asha, {})


def test_a_tuner_gives_the_run_config_and_searcher_it_will_use(tmp_path) -> None:
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    searcher = _searcher()
    tuner = tune.Tuner(
        lambda config: None,
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=1)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=2),
    )
    # The study changes the run config in place: the tuner must keep the change.
    internals.restored_run_config(tuner).verbose = 0
    assert internals.restored_run_config(tuner).verbose == 0
    assert internals.restored_searcher(tuner) is searcher


def test_no_other_module_uses_the_private_names() -> None:
    private = sorted({n for names in internals.RELIED_ON.values() for n in names if n[0] == "_"})
    names = "|".join(map(re.escape, private))
    pattern = re.compile(rf"\.({names})\b|[\"']({names})[\"']")
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for package in ("study", "trainables", "analysis")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "library_internals.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, "private Ray/Optuna names outside study/library_internals.py: " + "; ".join(
        found
    )


def test_the_version_bounds_admit_the_versions_installed() -> None:
    """The bounds in pyproject.toml are those tested: the installed versions satisfy them."""
    tomllib = pytest.importorskip("tomllib")
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bounded = {Requirement(d).name: Requirement(d).specifier for d in dependencies}
    for name in ("ray", "optuna"):
        specifier = bounded[name]
        assert any(s.operator == "<" for s in specifier), f"{name} has no upper bound"
        assert version(name) in specifier, f"installed {name} {version(name)} not in {specifier}"
