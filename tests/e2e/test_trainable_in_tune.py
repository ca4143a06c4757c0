"""The trainable inside a real Tune run: paused and resumed through its checkpoints."""

from __future__ import annotations

from pathlib import Path

from repmet.study_folder import layout
from repmet.study_folder.layout import CHECKPOINT_FILE
from trainables import MetricLearningTrainable


def test_tune_run_pauses_and_resumes_trials_through_checkpoints(ray_local, tmp_path) -> None:
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    from study.tune_plugins import NoTensorBoard

    class PauseOnce(FIFOScheduler):
        """Pauses every trial once after its second report; FIFO then resumes it from the
        checkpoint taken at the pause (save_checkpoint, then load_checkpoint in a new actor)."""

        def __init__(self) -> None:
            super().__init__()
            self.paused: set[str] = set()

        def on_trial_result(self, tune_controller, trial, result):
            if trial.trial_id not in self.paused and result["training_iteration"] == 2:
                self.paused.add(trial.trial_id)
                return TrialScheduler.PAUSE
            return TrialScheduler.CONTINUE

    tuner = tune.Tuner(
        tune.with_resources(MetricLearningTrainable, {"cpu": 1}),
        param_space={
            "loss": "repmet-v2",
            "m": 4,
            "d": 4,
            "k": 2,
            "iterations": 8,
            "eval_every": 2,
            "seed": tune.grid_search([0, 1]),
        },
        tune_config=tune.TuneConfig(scheduler=PauseOnce(), reuse_actors=False),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path),
            name="pause-resume",
            verbose=0,
            callbacks=[NoTensorBoard()],  # as in a study: the trainable's records only
            sync_config=tune.SyncConfig(sync_artifacts=True),
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True),
        ),
    )
    results = tuner.fit()
    assert not results.errors
    assert len(results) == 2
    for result in results:
        # iteration is the trial's own counter, restored from the checkpoint: it ends at the
        # trial's last iteration after four reports, while Tune's count since restore started over
        # at the pause. (Not read from metrics_dataframe: on a busy machine Tune can replace its
        # progress.csv with an older copy from storage when a paused trial starts again.)
        assert result.metrics[layout.ITERATION] == 8
        assert result.metrics["training_iteration"] == 4
        assert result.metrics["iterations_since_restore"] == 2
        assert (Path(result.checkpoint.path) / CHECKPOINT_FILE).exists()
    tags = _event_tags(tmp_path / "pause-resume")
    assert {layout.TRAIN_LOSS, "val/error_simple", layout.TRAIN_BATCH_ACCURACY} <= tags
    assert "plugin:hparams" in tags
    assert not any(tag.startswith("ray/tune/") for tag in tags)
    # The trial resumed in a new actor writes on into the same run: one run per trial.
    runs = {p.parent for p in (tmp_path / "pause-resume").rglob("events.out.tfevents.*")}
    assert len(runs) == 2 and all(run.name.startswith("MetricLearningTrainable") for run in runs)
    # Each step is recorded once, before and after the pause, in steps of eval_every.
    for run in runs:
        assert _scalar_steps(run, "val/error_simple") == [2, 4, 6, 8], run
    projectors = list((tmp_path / "pause-resume").rglob("projector_config.pbtxt"))
    assert len(projectors) == 2  # one embedding snapshot per trial


def _scalar_steps(run: Path, tag: str) -> list[int]:
    """The steps at which the TensorBoard run in ``run`` recorded ``tag``, in order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [event.step for event in accumulator.Scalars(tag)]


def _event_tags(directory: Path) -> set[str]:
    """Scalar tags, plus ``plugin:<name>`` for every TensorBoard plugin with data, found in the
    trainable's own event files under ``directory``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in directory.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events.parent))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
        try:
            if accumulator.PluginTagToContent("hparams"):
                tags.add("plugin:hparams")
        except KeyError:  # no HParams data in this file
            pass
    return tags
