"""Runs a hyperparameter study: ``python study/run.py --space repmet``.

Each loss of the search space is searched by its own Ray Tune experiment (Optuna TPE, seeded, with
the 2018 baseline as first point; ASHA early stopping on the validation error) with its own Optuna
study in ``<study folder>/optuna.db``. The folder layout is described in :mod:`study`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Set before Ray is imported: they silence banners and warnings that say nothing about the study
# (the token-auth banner, usage-stats notice, and snapshot warnings of fast trials).
QUIET_ENVIRONMENT = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",  # with RunConfig(verbose=0) the classic reporter prints nothing
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}
for _name, _value in QUIET_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)

REPOSITORY = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    # Run as a script without an installed package: make the project importable here and in the
    # Ray workers this driver starts (they inherit the environment).
    sys.path.insert(0, str(REPOSITORY))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPOSITORY), os.environ.get("PYTHONPATH")) if p
    )

import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.experiment import Trial  # noqa: E402
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler  # noqa: E402
from ray.tune.search.optuna import OptunaSearch  # noqa: E402

from repmet.config import TrialConfig  # noqa: E402
from repmet.data import default_data_root  # noqa: E402
from repmet.errors import ConfigError, RepmetError  # noqa: E402
from repmet.trial import load_splits  # noqa: E402
from search_spaces import (  # noqa: E402
    CPU_BATCH_BUDGET,
    GPU_BATCH_BUDGET,
    SEARCH_SPACES,
    SpaceContext,
)
from study.progress import StudyProgress, format_duration  # noqa: E402
from study.settings import (  # noqa: E402
    FINISHED,
    INTERRUPTED,
    OPTUNA_FILE,
    RUNNING,
    Manifest,
    StudySettings,
)
from trainables import MetricLearningTrainable, metrics  # noqa: E402

PROG = "study/run.py"

#: ``--smoke`` shrinks the study to a quick end-to-end check (explicit options still win).
SMOKE = {"num_samples": 2, "max_iterations": 20, "eval_every": 10}

#: ASHA: rungs at 1, 3, 9, ... evaluations; a third of the trials reaching a rung go on.
ASHA_GRACE_PERIOD = 1
ASHA_REDUCTION_FACTOR = 3
#: Checkpoints kept per trial: the best by the selection metric (Tune also keeps the latest).
CHECKPOINTS_KEPT = 1
DEFAULT_MAX_FAILURES = 2


class UsageError(RepmetError):
    """A malformed command line (argparse's complaint, as one line)."""


class QuietArgumentParser(argparse.ArgumentParser):
    """An argument parser that raises instead of printing usage and exiting, so that every
    command-line error ends as one line on stderr."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = QuietArgumentParser(
        prog=PROG,
        description="Search the hyperparameters of Magnet loss, RepMet and the cluster-margin loss "
        "with Ray Tune, Optuna (TPE) and ASHA. Each loss of the space gets its own Tune experiment "
        "and Optuna study with the same trial budget.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    spaces = ", ".join(SEARCH_SPACES.names())
    add = parser.add_argument
    add("--space", default="repmet", help=f"search space: {spaces}")
    add("--losses", default=None, help="comma-separated subset of the space's losses to search")
    add("--dataset", default=None, help="data set (default: the space's, digits)")
    add("--data-root", default=None, help="data folder (default: $REPMET_DATA_ROOT or ./data)")
    add("--model", default=None, help="embedding network (default: the space's, small-cnn)")
    add("--num-samples", type=int, default=None, help="trials per loss (default: the space's)")
    add("--max-iterations", type=int, default=None, help="training iterations of a full trial")
    add("--eval-every", type=int, default=None, help="iterations between validation evaluations")
    add("--cpus-per-trial", type=float, default=1.0, help="CPUs reserved per trial")
    add("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial (fractions share a GPU)")
    add("--max-concurrent", type=int, default=None, help="most trials at once (default: all fit)")
    add("--max-failures", type=int, default=DEFAULT_MAX_FAILURES, help="retries of a failed trial")
    add("--scheduler", default="asha", help="early stopping: asha, or none (every trial runs out)")
    add("--seed", type=int, default=0, help="seed of the TPE sampler and of every trial")
    add("--storage", default="results", help="folder holding study folders")
    add("--name", default=None, help="study folder name under --storage (default: the space)")
    add("--address", default=None, help="join a running Ray cluster (auto, host:port, ray://..)")
    add("--resume", action="store_true", help="continue an interrupted study (its stored settings)")
    add("--overwrite", action="store_true", help="delete an existing study folder and start anew")
    add("--smoke", action="store_true", help="a quick check: 2 trials per loss, 20 iterations")
    add("--verbose", action="store_true", help="show Ray's and Tune's own output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the study the command line describes; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        return run(args, command=shlex.join(["python", PROG, *argv]))
    except RepmetError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2


@dataclass(frozen=True)
class Study:
    folder: Path
    manifest: Manifest
    context: SpaceContext

    @property
    def settings(self) -> StudySettings:
        return self.manifest.settings


def run(args: argparse.Namespace, *, command: str) -> int:
    configure_logging(verbose=args.verbose)
    folder = Path(args.storage).resolve() / (args.name or args.space)
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other; choose one")
    if args.resume:
        manifest = Manifest.read(folder) if folder.is_dir() else None
        if manifest is None:
            raise ConfigError(f"cannot resume: there is no study at {folder}")
        manifest.command = command
        settings = manifest.settings
    else:
        if folder.exists() and not args.overwrite:
            raise ConfigError(
                f"the study folder {folder} already exists; pass --resume to continue it or "
                "--overwrite to replace it"
            )
        settings = None
    space = SEARCH_SPACES.get(settings.space if settings else args.space)
    context, settings = prepare(args, space, settings)
    if not args.resume:
        manifest = Manifest.create(folder, settings, command=command)

    started_ray = connect(address=args.address, verbose=args.verbose)
    try:
        check_resources(settings)
        if args.overwrite and folder.exists():
            shutil.rmtree(folder)
        manifest.write()
        return run_losses(Study(folder=folder, manifest=manifest, context=context))
    finally:
        if started_ray:
            ray.shutdown()


def configure_logging(*, verbose: bool) -> None:
    level = logging.INFO if verbose else logging.ERROR
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    for name in ("ray", "ray.tune", "ray.train", "ray.data"):
        logging.getLogger(name).setLevel(level)
    if not verbose:
        # OptunaSearch's define-by-run and dynamic-range notices, Tune's deprecation notes.
        warnings.filterwarnings("ignore", module="ray")
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def prepare(
    args: argparse.Namespace, space: Any, stored: StudySettings | None
) -> tuple[SpaceContext, StudySettings]:
    """Loads the data set (a bad name or a missing folder fails here, before Ray starts), derives
    the data context of the search space and, for a new study, its settings."""
    if stored is not None:
        fixed = dict(stored.fixed)
        batch_budget = stored.batch_budget
    else:
        fixed = fixed_config(args, space)
        batch_budget = GPU_BATCH_BUDGET if args.gpus_per_trial > 0 else CPU_BATCH_BUDGET
    config = TrialConfig.from_dict(fixed)
    splits = load_splits(config)
    labels = splits.train.labels.numpy()
    context = SpaceContext.from_labels(labels, model=config.model, batch_budget=batch_budget)
    if stored is not None:
        return context, stored

    losses = select_losses(space.losses, args.losses)
    baselines = {loss: space.baseline(loss, context) for loss in losses}
    counts = np.bincount(labels, minlength=splits.num_classes).tolist()
    for loss, baseline in baselines.items():
        TrialConfig.from_dict({**fixed, **baseline.point, "loss": loss}).validate_against(counts)
    settings = StudySettings(
        space=space.name,
        losses=losses,
        fixed=fixed,
        num_samples=first_given(
            args.num_samples, SMOKE["num_samples"] if args.smoke else None, space.num_samples
        ),
        metric=metrics.SELECTION_METRIC,
        mode=metrics.SELECTION_MODE,
        seed=args.seed,
        scheduler=args.scheduler,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent,
        max_failures=args.max_failures,
        batch_budget=batch_budget,
        baseline={loss: b.point for loss, b in baselines.items()},
        baseline_notes={loss: b.notes for loss, b in baselines.items()},
    )
    for loss, notes in settings.baseline_notes.items():
        for note in notes:
            print(f"{loss}: {note}")
    return context, settings


def fixed_config(args: argparse.Namespace, space: Any) -> dict[str, Any]:
    """The trial settings every trial shares: the space's defaults under the command line."""
    fixed = dict(space.fixed)
    smoke = SMOKE if args.smoke else {}
    overrides = {
        "dataset": args.dataset,
        "model": args.model,
        "iterations": first_given(args.max_iterations, smoke.get("max_iterations")),
        "eval_every": first_given(args.eval_every, smoke.get("eval_every")),
    }
    fixed.update({key: value for key, value in overrides.items() if value is not None})
    # Tune runs each trial in its own folder: the data root must not depend on the directory.
    root = Path(args.data_root) if args.data_root else default_data_root()
    fixed["data_root"] = str(root.resolve())
    fixed["device"] = "cuda" if args.gpus_per_trial > 0 else "cpu"
    fixed["num_threads"] = max(1, math.floor(args.cpus_per_trial))
    fixed["seed"] = args.seed
    return fixed


def first_given(*values: Any) -> Any:
    """The first value that is not None (an explicit option beats ``--smoke``, which beats the
    space's default)."""
    return next((value for value in values if value is not None), None)


def select_losses(available: tuple[str, ...], wanted: str | None) -> tuple[str, ...]:
    if wanted is None:
        return available
    chosen = tuple(loss.strip() for loss in wanted.split(",") if loss.strip())
    unknown = [loss for loss in chosen if loss not in available]
    if unknown or not chosen:
        raise ConfigError(
            f"--losses {wanted!r} must name losses of the space: {', '.join(available)}"
        )
    return chosen


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
    counter = trial.experiment_tag.split("_", 1)[0]
    return f"trial_{int(counter):03d}_{trial.trial_id}" if counter.isdigit() else trial.trial_id


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
            raise ConfigError(
                f"study interrupted during {loss}; continue it with --resume"
            ) from None
        complete = results.num_errors == 0 and results.num_terminated >= settings.num_samples
        manifest.set_status(loss, FINISHED if complete else INTERRUPTED)
        summaries.append(summarize(loss, results, settings))
        if not complete:
            print("\n".join(summaries))
            raise ConfigError(
                f"{loss}: {results.num_errors} trials failed and "
                f"{settings.num_samples - results.num_terminated} did not finish; the study is "
                f"interrupted: fix the cause and continue it with --resume"
            )
    print("\n".join(summaries))
    print(f"Done in {format_duration(time.monotonic() - started)}. Results: {study.folder}")
    print(f"  curves:  tensorboard --logdir {shlex.quote(str(study.folder))}")
    print(f"  table:   python analysis/report.py {shlex.quote(str(study.folder))}")
    return 0


def fit_loss(study: Study, loss: str, index: int) -> tune.ResultGrid:
    """Runs (or resumes) the Tune experiment of one loss."""
    settings = study.settings
    path = study.folder / loss
    trainable = tune.with_resources(
        MetricLearningTrainable,
        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial},
    )
    if path.exists() and tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
        return tuner.fit()
    # A loss that died before Tune's first snapshot starts over, Optuna study included.
    shutil.rmtree(path, ignore_errors=True)
    storage = optuna_storage(study.folder)
    if loss in {summary.study_name for summary in optuna.get_all_study_summaries(storage)}:
        optuna.delete_study(study_name=loss, storage=storage)
    tuner = tune.Tuner(
        trainable,
        param_space=dict(settings.fixed),
        tune_config=tune.TuneConfig(
            metric=settings.metric,
            mode=settings.mode,
            search_alg=OptunaSearch(
                space=SEARCH_SPACES.get(settings.space).objective(loss, study.context),
                metric=settings.metric,
                mode=settings.mode,
                points_to_evaluate=[dict(settings.baseline[loss])],
                sampler=optuna.samplers.TPESampler(seed=settings.seed),
                storage=storage,
                study_name=loss,
            ),
            scheduler=scheduler(settings),
            num_samples=settings.num_samples,
            max_concurrent_trials=max_concurrent(settings),
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=loss,
            storage_path=str(study.folder),
            verbose=0,
            callbacks=[
                StudyProgress(
                    loss=loss,
                    loss_index=index,
                    loss_count=len(settings.losses),
                    num_samples=settings.num_samples,
                    iterations=settings.iterations,
                    metric=settings.metric,
                    mode=settings.mode,
                )
            ],
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
        best = results.get_best_result(settings.metric, settings.mode, scope="all")
    except RuntimeError:
        return f"{loss}: no trial reported {settings.metric}"
    value = best.metrics_dataframe[settings.metric].agg(settings.mode)
    searched = {k: v for k, v in best.config.items() if k in settings.baseline[loss]}
    shown = " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in searched.items()
    )
    return f"{loss}: {len(results)} trials, best {settings.metric} {value:.4f} ({shown})"


if __name__ == "__main__":
    sys.exit(main())
