"""What a study records for the tools of the ecosystem: TensorBoard (one run per trial, no Tune
tags, HParams of the loss's searched fields and the final metrics, a projector snapshot of every
trial that trained), Optuna (a named metric, pruned trials, iteration-keyed intermediate values,
links to the trial folders) and ``trials.csv`` for pandas."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from outside_tune import make_trainable
from study_folders import study_settings, write_manifest, write_trial
from tensorboard_records import projector, tensorboard_view

from repmet.catalogue import LOSSES
from repmet.config import TrainingConfig
from repmet.study_folder import layout
from repmet.study_folder.manifest import Manifest
from repmet.study_folder.trials import TrialStatus, read_trial
from trainables.records import final_metrics, searched_fields, session_hparams

SMALL = {"loss": "repmet-v2", "m": 4, "d": 4, "k": 2, "iterations": 20, "eval_every": 5}
LOSSES_STUDIED = ("repmet-v2", "softmax")  # different searched fields: alpha, weight_decay, ...


# ------------------------------------------------------------------ the trainable alone


def test_a_trial_is_one_run_with_its_hparams_metrics_and_projector(tmp_path) -> None:
    trial = make_trainable(SMALL, tmp_path)
    results = [trial.train() for _ in range(2)]
    trial.stop()  # stopped early, as ASHA would: everything is there already
    folder = Path(trial.logdir)
    view = tensorboard_view(tmp_path)
    run = str(folder.relative_to(tmp_path))
    assert list(view["runs"]) == [run]  # the trial folder itself, no sub-run
    assert not any(tag.startswith("ray/tune/") for tag in view["runs"][run])
    assert {layout.TRAIN_LOSS, *layout.validation_metrics()} <= view["runs"][run]

    config = TrainingConfig.from_dict(SMALL)
    searched = set(LOSSES.get("repmet-v2").searched)
    session = view["sessions"][run]
    assert set(session["hparams"]) == {"loss", *searched}
    assert session["hparams"]["loss"] == "repmet-v2"
    assert session["hparams"]["k"] == 2 and session["hparams"]["lr"] == config.lr
    metric_tags = [m["name"]["tag"] for m in view["experiment"]["metricInfos"]]
    assert metric_tags == list(final_metrics("error_simple"))
    # The plugin shows each metric as its last value: the trial's latest step.
    assert session["metrics"] == pytest.approx({t: results[-1][t] for t in metric_tags})
    # The experiment's columns: the loss and what any catalogued loss searches.
    columns = {info["name"] for info in view["experiment"]["hparamInfos"]}
    assert columns == {"loss", *searched_fields()}

    name, rows, count = projector(folder)
    assert rows[0] == ["class", "kind"]
    kinds = [kind for _, kind in rows[1:]]
    assert count == len(rows) - 1 == kinds.count("example") + kinds.count("representative")
    assert kinds.count("representative") == 10 * 2  # C * K, after the validation points
    assert set(kinds[-20:]) == {"representative"}
    assert {cls for cls, _ in rows[1:]} == {str(c) for c in range(10)}
    best = max(
        r[layout.ITERATION]
        for r in results
        if r[layout.best_metric("error_simple")] == results[-1][layout.best_metric("error_simple")]
    )
    assert f"iteration {best}" in name


def test_k_means_losses_mark_their_centroids(tmp_path) -> None:
    trial = make_trainable({**SMALL, "loss": "magnet"}, tmp_path)
    trial.train()
    trial.stop()
    _, rows, _ = projector(Path(trial.logdir))
    assert [kind for _, kind in rows[1:]].count("centroid") == 10 * 2


def test_an_actor_that_never_trains_leaves_no_run(tmp_path) -> None:
    trial = make_trainable(SMALL, tmp_path)
    trial.stop()
    assert list(Path(trial.logdir).iterdir()) == []


def test_a_reused_actor_writes_each_trial_into_its_own_folder(tmp_path, monkeypatch) -> None:
    from ray.tune.trainable import trainable as trainable_module

    trial = make_trainable(SMALL, tmp_path)
    trial.train()
    first = Path(trial.logdir)
    # What Tune does with reuse_actors=True: a new log folder, then reset_config.
    monkeypatch.setattr(trainable_module, "DEFAULT_STORAGE_PATH", str(tmp_path))
    assert trial.reset({**SMALL, "loss": "softmax"})
    second = Path(trial.logdir)
    assert second != first and list(second.iterdir()) == []
    trial.train()
    trial.stop()
    view = tensorboard_view(tmp_path)
    runs = {str(p.relative_to(tmp_path)) for p in (first, second)}
    assert set(view["runs"]) == runs
    losses = {name: s["hparams"]["loss"] for name, s in view["sessions"].items()}
    assert losses == {
        str(first.relative_to(tmp_path)): "repmet-v2",
        str(second.relative_to(tmp_path)): "softmax",
    }
    assert len(list(first.glob("events.out.tfevents.*"))) == 1


@pytest.mark.parametrize("loss", LOSSES.in_order())
def test_hparams_are_the_loss_and_its_searched_fields(loss) -> None:
    hparams = session_hparams(TrainingConfig(loss=loss))
    assert list(hparams) == ["loss", *LOSSES.get(loss).searched]
    assert hparams["loss"] == loss


# ------------------------------------------------------------------------ the searcher


def make_searcher(tmp_path: Path, **kwargs):
    from search_spaces import SEARCH_SPACES, SpaceContext
    from study.tune_plugins import StudyOptunaSearch

    context = SpaceContext(num_classes=10, smallest_class=100)
    return StudyOptunaSearch(
        space=SEARCH_SPACES.get("all").objective("repmet-v2", context),
        metric="val/best/error_simple",
        mode="min",
        storage=optuna.storages.InMemoryStorage(),
        study_name="repmet-v2",
        **kwargs,
    )


def result(iteration: int, value: float, **extra) -> dict:
    return {
        layout.ITERATION: iteration,
        "training_iteration": iteration // 10,
        "val/best/error_simple": value,
        "config/iterations": 30,
        **extra,
    }


def test_searcher_records_states_steps_and_folders(tmp_path) -> None:
    searcher = make_searcher(tmp_path)
    for trial_id in ("aaa", "bbb", "ccc", "ddd", "eee"):
        assert searcher.suggest(trial_id)
    # aaa runs to the end; its last result only arrives with the completion, as in Tune.
    searcher.on_trial_result("aaa", result(10, 0.5))
    searcher.on_trial_result("aaa", result(20, 0.4))
    searcher.on_trial_complete("aaa", result(30, 0.3))
    # bbb is stopped by the scheduler after its first step.
    searcher.on_trial_result("bbb", result(10, 0.6))
    searcher.on_trial_complete("bbb", result(20, 0.55))
    # ccc fails for its own configuration; ddd reaches NaN; eee raises (retries exhausted).
    searcher.on_trial_result("ccc", result(10, 0.7))
    searcher.on_trial_complete(
        "ccc", {layout.ITERATION: 20, layout.TRIAL_FAILED: "diverged", "config/iterations": 30}
    )
    searcher.on_trial_complete("ddd", result(30, math.nan))
    searcher.on_trial_result("eee", result(10, 0.8))
    searcher.on_trial_complete("eee", error=True)

    study = searcher._ot_study
    assert study.metric_names == ["val/best/error_simple"]
    trials = {t.user_attrs["tune_trial_id"]: t for t in study.get_trials()}
    assert {k: t.state for k, t in trials.items()} == {
        "aaa": TrialState.COMPLETE,
        "bbb": TrialState.PRUNED,
        "ccc": TrialState.FAIL,
        "ddd": TrialState.FAIL,
        "eee": TrialState.RUNNING,  # --resume finishes it
    }
    assert trials["aaa"].value == 0.3
    assert trials["aaa"].intermediate_values == {10: 0.5, 20: 0.4, 30: 0.3}
    assert trials["bbb"].value == 0.55  # Optuna keeps the last intermediate value
    assert trials["bbb"].intermediate_values == {10: 0.6, 20: 0.55}
    assert trials["ccc"].intermediate_values == {10: 0.7}
    # The trial's folder is named by StudySearch, which links it (the next test).
    assert not any("trial_dir" in t.user_attrs for t in trials.values())


def test_the_study_search_runs_losses_side_by_side_each_with_its_budget(tmp_path) -> None:
    from ray.tune.search import Searcher

    from search_spaces import SEARCH_SPACES, SpaceContext
    from study.tune_plugins import StudyOptunaSearch, StudySearch, trial_dirname

    context = SpaceContext(num_classes=10, smallest_class=100)
    losses = ("magnet", "repmet-v2")
    baselines = {"magnet": {"k": 3, "alpha": 2.5}, "repmet-v2": {"k": 2, "m": 12}}

    def search(loss: str) -> StudyOptunaSearch:
        return StudyOptunaSearch(
            space=SEARCH_SPACES.get("all").objective(loss, context),
            metric="val/best/error_simple",
            mode="min",
            points_to_evaluate=[baselines[loss]],
            storage=optuna.storages.InMemoryStorage(),
            study_name=loss,
        )

    study = StudySearch(
        {loss: search(loss) for loss in losses},
        configs={loss: {"loss": loss, "iterations": 30} for loss in losses},
        num_samples=2,
        max_concurrent=1,
        metric="val/best/error_simple",
        mode="min",
    )
    first = {trial_id: study.suggest(trial_id) for trial_id in ("a", "b")}
    assert study.suggest("c") is None  # one trial of each loss at a time
    # Each loss's baseline first, on the loss's whole configuration.
    for trial_id, loss in (("a", "magnet"), ("b", "repmet-v2")):
        assert (first[trial_id]["loss"], first[trial_id]["iterations"]) == (loss, 30)
        assert {name: first[trial_id][name] for name in baselines[loss]} == baselines[loss]
    names = {t: trial_dirname(SimpleNamespace(trial_id=t)) for t in "ab"}
    assert names == {"a": "magnet-trial_001_a", "b": "repmet-v2-trial_001_b"}
    study.on_trial_result("b", result(10, 0.5))
    study.on_trial_complete("b", result(30, 0.4))
    assert study.suggest("c")["loss"] == "repmet-v2"
    assert study.suggest("d") is None  # repmet-v2 has its 2 trials; magnet one running

    saved = tmp_path / "searcher-state.pkl"
    study.save(str(saved))
    study.on_trial_complete("a", result(30, 0.3))
    assert study.suggest("e")["loss"] == "magnet"
    assert study.suggest("f") == Searcher.FINISHED  # every loss has its trials

    # A resumed run with more trials per loss keeps its own budget, not the pickled one.
    study.num_samples = 3
    study.restore(str(saved))
    assert study.num_samples == 3 and study.created == {"magnet": 1, "repmet-v2": 2}
    for trial_id in ("a", "c"):
        study.on_trial_complete(trial_id, result(30, 0.3))
    assert [study.suggest(t)["loss"] for t in ("g", "h")] == ["magnet", "repmet-v2"]
    assert trial_dirname(SimpleNamespace(trial_id="h")) == (
        "repmet-v2-trial_003_h"
    )
    recorded = study.searchers["repmet-v2"]._ot_study.trials
    trials = {t.user_attrs["tune_trial_id"]: t for t in recorded}
    assert trials["b"].state == TrialState.COMPLETE and trials["b"].value == 0.4
    assert trials["b"].user_attrs["trial_dir"] == "trials/repmet-v2-trial_001_b"


def test_verbose_runs_show_tunes_table_instead_of_the_progress_line(tmp_path) -> None:
    from ray.tune import CLIReporter

    from study.progress import StudyProgress
    from study.tune_plugins import NoTensorBoard
    from study.tuning import Study, reporting

    settings = study_settings(
        losses=("repmet-v2",),
        fixed={"iterations": 20, "eval_every": 10},
        max_failures=0,
        baseline={"repmet-v2": {"k": 3, "m": 12}},
    )
    study = Study(
        folder=tmp_path,
        manifest=Manifest.create(tmp_path, settings, command=""),
        context=None,
    )
    quiet = reporting(study, verbose=False)
    assert quiet["verbose"] == 0 and quiet["progress_reporter"] is None
    assert [type(c) for c in quiet["callbacks"]] == [NoTensorBoard, StudyProgress]
    loud = reporting(study, verbose=True)
    assert loud["verbose"] == 2 and isinstance(loud["progress_reporter"], CLIReporter)
    assert [type(c) for c in loud["callbacks"]] == [NoTensorBoard]


# ------------------------------------------------------ trials.csv and how a trial ended


def test_trials_csv_tells_failures_apart(tmp_path) -> None:
    from repmet.study_folder.trials_csv import write_trials_csv

    write_manifest(tmp_path, num_samples=4, baseline={"magnet": {"k": 3, "alpha": 3.0}})

    def trial(name: str, rows: list[dict], **files: str) -> None:
        folder = tmp_path / "magnet" / name
        folder.mkdir(parents=True)
        params = {"loss": "magnet", "k": 3, "alpha": 2.5, "lr": 0.01, "iterations": 30}
        (folder / "params.json").write_text(json.dumps(params))
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        for file, text in files.items():
            (folder / file).write_text(text)

    def row(iteration: int, error: float, **extra) -> dict:
        return {
            layout.ITERATION: iteration,
            "val/error_simple": error,
            "time_total_s": 1.5,
            **extra,
        }

    trial("trial_001_a", [row(10, 0.3), row(20, 0.2), row(30, 0.2, done=True)])
    trial("trial_002_b", [row(10, 0.5, done=True)])
    trial(
        "trial_003_c",
        [row(10, 0.4), {layout.ITERATION: 10, layout.TRIAL_FAILED: "diverged", "done": True}],
    )
    trial("trial_004_d", [row(10, 0.6)], **{"error.txt": "Traceback\n...\nInjectedFailure: boom\n"})
    table = pd.read_csv(write_trials_csv(tmp_path), keep_default_na=False)
    assert list(table["status"]) == ["completed", "stopped early", "failed", "failed"]
    assert list(table["failure"]) == ["", "", "diverged", "InjectedFailure: boom"]
    assert list(table["best_iteration"]) == [30, 10, 10, 10]  # the latest of equal values
    assert list(table["iterations"]) == [30, 10, 10, 10]
    assert list(table.columns[2:4]) == ["k", "alpha"] and list(table["alpha"]) == [2.5] * 4
    assert "lr" not in table.columns  # not searched by this study


def test_the_reader_and_the_searcher_judge_a_trial_alike(tmp_path: Path) -> None:

    finals = {
        "aaa": {layout.ITERATION: 30, "val/best/error_simple": 0.3, "done": True},
        "bbb": {layout.ITERATION: 20, "val/best/error_simple": 0.4, "done": True},
        "ccc": {
            layout.ITERATION: 20,
            "val/best/error_simple": 1.0,
            layout.TRIAL_FAILED: "nan",
            "done": True,
        },
    }
    searcher = make_searcher(tmp_path)
    for trial_id, final in finals.items():
        assert searcher.suggest(trial_id)
        searcher.on_trial_complete(trial_id, {**final, "config/iterations": 30})
    states = {t.user_attrs["tune_trial_id"]: t.state for t in searcher._ot_study.get_trials()}
    read = {
        trial_id: read_trial(write_trial(tmp_path / "read" / trial_id, [final])).status
        for trial_id, final in finals.items()
    }
    as_optuna = {
        TrialStatus.COMPLETED: TrialState.COMPLETE,
        TrialStatus.STOPPED: TrialState.PRUNED,
        TrialStatus.FAILED: TrialState.FAIL,
    }
    assert {k: as_optuna[v] for k, v in read.items()} == states
    assert set(read.values()) == set(as_optuna)  # every outcome was compared
