"""What a study records for the tools of the ecosystem: TensorBoard (one run per trial, no Tune
tags, HParams of the loss's searched fields and the final metrics, a projector snapshot of every
trial that trained), Optuna (a named metric, pruned trials, iteration-keyed intermediate values,
links to the trial folders) and ``trials.csv`` for pandas."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from outside_tune import make_trainable

from analysis.study_files import loss_trial_folders
from repmet import study_format as layout
from repmet.catalogue import LOSSES
from repmet.config import TrainingConfig
from trainables.records import final_metrics, searched_fields, session_hparams

SMALL = {"loss": "repmet-v2", "m": 4, "d": 4, "k": 2, "iterations": 20, "eval_every": 5}
LOSSES_STUDIED = ("repmet-v2", "softmax")  # different searched fields: alpha, weight_decay, ...


# ----------------------------------------------------------------------------- helpers


def tensorboard_view(logdir: Path) -> dict:
    """What TensorBoard serves for ``logdir``: its runs with their scalar tags, and the HParams
    plugin's answers (the experiment and the session groups), through the plugin's own routes."""
    from tensorboard import context
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams.hparams_plugin import HParamsPlugin
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = MultiplexerDataProvider(multiplexer, str(logdir))
    plugin = HParamsPlugin(base_plugin.TBContext(data_provider=provider, logdir=str(logdir)))
    routes = plugin.get_plugin_apps()

    def post(route: str, body: dict) -> dict:
        def app(environ, start_response):
            context.set_in_environ(environ, context.RequestContext())
            return routes[route](environ, start_response)

        response = Client(app, Response).post("/", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        return json.loads(response.get_data())

    scalars = multiplexer.PluginRunToTagToContent("scalars")
    statuses = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
    groups = post(
        "/session_groups",
        {"experimentName": "", "allowedStatuses": statuses, "startIndex": 0, "sliceSize": 1000},
    )["sessionGroups"]
    return {
        "runs": {run: set(scalars.get(run, {})) for run in multiplexer.Runs()},
        "experiment": post("/experiment", {"experimentName": ""}),
        "sessions": {
            group["name"]: {
                "hparams": dict(group["hparams"]),
                "metrics": {m["name"]["tag"]: m["value"] for m in group["metricValues"]},
            }
            for group in groups
        },
    }


def projector(folder: Path) -> tuple[str, list[list[str]], int]:
    """The tensor name, the metadata rows (header first) and the row count of the tensors of a
    run's projector snapshot."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    config = text_format.Parse((folder / "projector_config.pbtxt").read_text(), ProjectorConfig())
    (embedding,) = config.embeddings
    metadata = (folder / embedding.metadata_path).read_text().splitlines()
    tensors = (folder / embedding.tensor_path).read_text().splitlines()
    assert list(embedding.tensor_shape) == [len(tensors), len(tensors[0].split("\t"))]
    return embedding.tensor_name, [line.split("\t") for line in metadata], len(tensors)


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
    from study.tuning import StudyOptunaSearch

    context = SpaceContext(num_classes=10, smallest_class=100)
    return StudyOptunaSearch(
        space=SEARCH_SPACES.get("all").objective("repmet-v2", context),
        metric="val/best/error_simple",
        mode="min",
        storage=optuna.storages.InMemoryStorage(),
        study_name="repmet-v2",
        experiment=str(tmp_path / "repmet-v2"),
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
    (tmp_path / "repmet-v2" / "trial_002_bbb").mkdir(parents=True)
    for trial_id in ("aaa", "bbb", "ccc", "ddd", "eee"):
        assert searcher.suggest(trial_id)
    # aaa runs to the end; its last result only arrives with the completion, as in Tune.
    searcher.on_trial_result("aaa", result(10, 0.5))
    searcher.on_trial_result("aaa", result(20, 0.4))
    searcher.on_trial_complete("aaa", result(30, 0.3, experiment_tag="1_k=3"))
    # bbb is stopped by the scheduler after its first step.
    searcher.on_trial_result("bbb", result(10, 0.6))
    searcher.on_trial_complete("bbb", result(20, 0.55, experiment_tag="2_k=2"))
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
    assert trials["aaa"].user_attrs["trial_dir"] == "repmet-v2/trial_001_aaa"
    # Linked from the folder in storage as soon as it exists, before the trial ends.
    assert trials["bbb"].user_attrs["trial_dir"] == "repmet-v2/trial_002_bbb"
    assert "trial_dir" not in trials["eee"].user_attrs  # no folder found yet


def test_the_study_search_runs_losses_side_by_side_each_with_its_budget(tmp_path) -> None:
    from ray.tune.search import Searcher

    from search_spaces import SEARCH_SPACES, SpaceContext
    from study.tuning import StudyOptunaSearch, StudySearch, trial_dirname

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
            experiment=str(tmp_path / layout.EXPERIMENT_DIR),
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
    names = {t: trial_dirname(SimpleNamespace(trial_id=t, experiment_tag="")) for t in "ab"}
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
    assert trial_dirname(SimpleNamespace(trial_id="h", experiment_tag="")) == (
        "repmet-v2-trial_003_h"
    )
    recorded = study.searchers["repmet-v2"]._ot_study.trials
    trials = {t.user_attrs["tune_trial_id"]: t for t in recorded}
    assert trials["b"].state == TrialState.COMPLETE and trials["b"].value == 0.4
    assert trials["b"].user_attrs["trial_dir"] == "trials/repmet-v2-trial_001_b"


def test_verbose_runs_show_tunes_table_instead_of_the_progress_line(tmp_path) -> None:
    from ray.tune import CLIReporter

    from study.progress import StudyProgress
    from study.tuning import NoTensorBoard, Study, reporting

    settings = layout.StudySettings(
        space="all",
        losses=("repmet-v2",),
        fixed={"iterations": 20, "eval_every": 10},
        num_samples=2,
        metric="val/error_simple",
        mode="min",
        seed=0,
        scheduler="asha",
        sampler="tpe",
        cpus_per_trial=1,
        gpus_per_trial=0,
        max_concurrent=None,
        max_failures=0,
        batch_budget=64,
        baseline={"repmet-v2": {"k": 3, "m": 12}},
        baseline_notes={},
    )
    study = Study(
        folder=tmp_path,
        manifest=layout.Manifest.create(tmp_path, settings, command=""),
        context=None,
    )
    quiet = reporting(study, verbose=False)
    assert quiet["verbose"] == 0 and quiet["progress_reporter"] is None
    assert [type(c) for c in quiet["callbacks"]] == [NoTensorBoard, StudyProgress]
    loud = reporting(study, verbose=True)
    assert loud["verbose"] == 2 and isinstance(loud["progress_reporter"], CLIReporter)
    assert [type(c) for c in loud["callbacks"]] == [NoTensorBoard]


# -------------------------------------------------------------------------- a real study


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory) -> Path:
    import ray

    from study.run import main

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, log_to_driver=False, configure_logging=False)
    storage = tmp_path_factory.mktemp("studies")
    argv = ["--space", "all", "--losses", ",".join(LOSSES_STUDIED), "--smoke"]
    argv += ["--num-samples", "3", "--max-concurrent", "1", "--storage", str(storage)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*argv, "--name", "records"]) == 0
    return storage / "records"


def trial_folders(folder: Path, loss: str) -> list[Path]:
    return loss_trial_folders(folder, loss)[1]


def last_result(trial: Path) -> dict:
    return json.loads((trial / "result.json").read_text().splitlines()[-1])


@pytest.mark.slow
def test_tensorboard_shows_one_clean_run_per_trial(study_folder) -> None:
    view = tensorboard_view(study_folder)
    trials = {
        t.relative_to(study_folder).as_posix(): t
        for loss in LOSSES_STUDIED
        for t in trial_folders(study_folder, loss)
    }
    # One run per trial, named trials/<loss>-trial_<NNN>_<id>.
    assert set(view["runs"]) == set(trials)
    for run, tags in view["runs"].items():
        assert tags and not any(tag.startswith("ray/tune/") for tag in tags), run
    metrics = list(final_metrics("error_simple"))
    assert [m["name"]["tag"] for m in view["experiment"]["metricInfos"]] == metrics
    assert set(view["sessions"]) == set(trials)
    for run, session in view["sessions"].items():
        loss = session["hparams"]["loss"]
        assert set(session["hparams"]) == {"loss", *LOSSES.get(loss).searched}, run
        last = last_result(trials[run])
        assert session["metrics"] == pytest.approx({m: last[m] for m in metrics}), run
        # Every trial that trained has a projector snapshot, those stopped early included.
        _, rows, _ = projector(trials[run])
        assert len(rows) > 1


@pytest.mark.slow
def test_optuna_records_name_the_metric_prune_and_link_trials(study_folder) -> None:
    storage = f"sqlite:///{study_folder / layout.OPTUNA_FILE}"
    pruned = 0
    for loss in LOSSES_STUDIED:
        study = optuna.load_study(study_name=loss, storage=storage)
        assert study.metric_names == ["val/best/error_simple"]
        folders = {t.name: t for t in trial_folders(study_folder, loss)}
        assert len(study.trials) == len(folders) == 3
        for trial in study.trials:
            folder = study_folder / trial.user_attrs["trial_dir"]
            assert folder.parent.name == layout.EXPERIMENT_DIR and folder.name in folders
            assert folder.name.startswith(f"{loss}-trial_")
            assert folder.name.endswith("_" + trial.user_attrs["tune_trial_id"])
            rows = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
            # Intermediate values: the objective at every step, keyed by training iteration.
            assert trial.intermediate_values == {
                row[layout.ITERATION]: row["val/best/error_simple"] for row in rows
            }
            finished = rows[-1][layout.ITERATION] == 20
            assert trial.state == (TrialState.COMPLETE if finished else TrialState.PRUNED)
            assert trial.value == rows[-1]["val/best/error_simple"]
            pruned += not finished
    assert pruned  # ASHA stopped some trial (deterministic: seeded search, one thread each)


@pytest.mark.slow
def test_trials_csv_is_one_table_for_pandas(study_folder) -> None:
    from study.trials_table import write_trials_csv

    path = write_trials_csv(study_folder)
    assert path == study_folder / layout.TRIALS_FILE
    table = pd.read_csv(path)
    assert len(table) == 6
    assert list(table["loss"]) == [loss for loss in LOSSES_STUDIED for _ in range(3)]
    assert list(table["trial"]) == [1, 2, 3] * 2
    searched = {name for loss in LOSSES_STUDIED for name in LOSSES.get(loss).searched}
    assert searched <= set(table.columns)
    assert table.loc[table["loss"] == "repmet-v2", "weight_decay"].isna().all()
    assert table.loc[table["loss"] == "softmax", "weight_decay"].notna().all()
    for row in table.itertuples(index=False):
        row = row._asdict()
        folder = study_folder / row["trial_dir"]
        last = last_result(folder)
        assert row["iterations"] == last[layout.ITERATION]
        assert row["status"] == ("completed" if last[layout.ITERATION] == 20 else "stopped early")
        assert row["seconds"] == pytest.approx(last["time_total_s"])
        params = json.loads((folder / "params.json").read_text())
        for name in LOSSES.get(row["loss"]).searched:
            assert row[name] == params[name]
    # The best validation metrics are those of the best step, the one the report evaluates.
    best = table["val/error_simple"].min()
    assert set(table.columns) >= set(layout.validation_metrics()) and 0 <= best <= 1


def test_trials_csv_tells_failures_apart(tmp_path) -> None:
    from study.trials_table import write_trials_csv

    manifest = {
        "losses": ["magnet"],
        "num_samples": 4,
        "metric": "val/error_simple",
        "mode": "min",
        "baseline": {"magnet": {"k": 3, "alpha": 3.0}},
        "status": {},
    }
    (tmp_path / layout.MANIFEST_FILE).write_text(json.dumps(manifest))

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
