"""Runs a hyperparameter study: ``python study/run.py --space repmet``.

Each loss of the search space is searched by its own Ray Tune experiment (Optuna TPE, seeded, with
the 2018 baseline as first point; ASHA early stopping on the validation error) with its own Optuna
study in ``<study folder>/optuna.db``. The folder layout is described in :mod:`repmet.study_format`.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from repmet.cli import (
    DefaultsHelpFormatter,
    OneLineArgumentParser,
    UsageError,
    program_name,
    run_command,
)
from repmet.config import SELECTABLE_METRICS, TrainingConfig
from repmet.errors import ConfigError
from repmet.study_format import (
    DEFAULT_SELECT,
    FORMAT_VERSION,
    MANIFEST_FILE,
    Manifest,
    StudySettings,
    validation_metric,
)
from search_spaces import (
    CPU_BATCH_BUDGET,
    GPU_BATCH_BUDGET,
    SEARCH_SPACES,
    SearchSpace,
    SpaceContext,
)

PROG = program_name("study/run.py")

#: Set before Ray is imported: they silence banners and warnings that say nothing about the study
#: (the token-auth banner, usage-stats notice, and snapshot warnings of fast trials).
QUIET_ENVIRONMENT = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",  # with RunConfig(verbose=0) the classic reporter prints nothing
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}

#: ``--smoke`` shrinks the study to a quick end-to-end check (explicit options still win).
SMOKE = {"num_samples": 2, "max_iterations": 20, "eval_every": 10}

DEFAULT_MAX_FAILURES = 2


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog=PROG,
        description="Search the hyperparameters of Magnet loss, RepMet and the cluster-margin loss "
        "with Ray Tune, Optuna (TPE) and ASHA. Each loss of the space gets its own Tune experiment "
        "and Optuna study with the same trial budget.",
        formatter_class=DefaultsHelpFormatter,
    )
    spaces = "; ".join(
        f"{name} - {SEARCH_SPACES.get(name).description}" for name in SEARCH_SPACES.names()
    )
    add = parser.add_argument
    add("--space", default="repmet", help=f"search space: {spaces}")
    add("--losses", default=None, help="comma-separated subset of the space's losses to search")
    add("--dataset", default=None, help="data set (default: the space's, digits)")
    add("--data-root", default=None, help="data folder (default: $REPMET_DATA_ROOT or ./data)")
    add("--model", default=None, help="embedding network (default: the space's, small-cnn)")
    add("--num-samples", type=int, default=None, help="trials per loss (default: the space's)")
    add(
        "--max-iterations",
        type=int,
        default=None,
        help="training iterations of a full trial (default: the space's)",
    )
    add(
        "--eval-every",
        type=int,
        default=None,
        help="iterations between validation evaluations (default: the space's)",
    )
    add("--cpus-per-trial", type=float, default=1.0, help="CPUs reserved per trial")
    add("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial (fractions share a GPU)")
    add("--max-concurrent", type=int, default=None, help="most trials at once (default: all fit)")
    add("--max-failures", type=int, default=DEFAULT_MAX_FAILURES, help="retries of a failed trial")
    add("--scheduler", default="asha", help="early stopping: asha, or none (every trial runs out)")
    add("--sampler", default="tpe", help="Optuna sampler: tpe, or random (a baseline for TPE)")
    add(
        "--select",
        default=DEFAULT_SELECT,
        choices=tuple(SELECTABLE_METRICS),
        metavar="METRIC",
        help="validation metric that selects each trial's best step and the best trial: "
        + ", ".join(SELECTABLE_METRICS),
    )
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
    """Runs the study the command line describes; returns the exit status (:mod:`repmet.cli`)."""
    argv = list(sys.argv[1:] if argv is None else argv)

    def body() -> int:
        args = build_parser().parse_args(argv)
        return run(args, command=shlex.join(["python", PROG, *argv]))

    return run_command(PROG, body)


def run(args: argparse.Namespace, *, command: str) -> int:
    configure_logging(verbose=args.verbose)
    folder = Path(args.storage).resolve() / (args.name or args.space)
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other; choose one")
    stored: Manifest | None = None
    if args.resume:
        if not (folder / MANIFEST_FILE).is_file():
            raise ConfigError(f"cannot resume: there is no study at {folder}")
        stored = Manifest.read(folder)
        if stored.version != FORMAT_VERSION:
            raise ConfigError(
                f"the study at {folder} was written in study format {stored.version} by an earlier "
                f"release (this one writes format {FORMAT_VERSION}); its report can still be "
                "made, but it cannot be resumed: start a new study"
            )
        stored.command = command
    elif folder.exists() and not args.overwrite:
        raise ConfigError(
            f"the study folder {folder} already exists; pass --resume to continue it or "
            "--overwrite to replace it"
        )
    space = SEARCH_SPACES.get(stored.settings.space if stored else args.space)
    context, settings = prepare(args, space, stored.settings if stored else None)
    manifest = stored or Manifest.create(folder, settings, command=command)

    # Ray (and the trainable, with it) is imported only once the command line has been checked,
    # so that --help and mistakes answer at once.
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    from study import tuning

    started_ray = tuning.connect(address=args.address, verbose=args.verbose)
    try:
        tuning.check_resources(settings)
        if args.overwrite and folder.exists():
            shutil.rmtree(folder)
        manifest.write()
        return tuning.run_losses(tuning.Study(folder=folder, manifest=manifest, context=context))
    finally:
        if started_ray:
            tuning.disconnect()


def configure_logging(*, verbose: bool) -> None:
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    logging.getLogger("ray").setLevel(logging.INFO if verbose else logging.ERROR)
    # A failed trial is reported by the progress display in one line (the traceback is in the
    # trial's error.txt), so Tune's own error log with the traceback stays off.
    for name in ("ray.tune", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.CRITICAL)
    if not verbose:
        # OptunaSearch's define-by-run and dynamic-range notices, Tune's deprecation notes.
        warnings.filterwarnings("ignore", module="ray")
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def prepare(
    args: argparse.Namespace, space: SearchSpace, stored: StudySettings | None
) -> tuple[SpaceContext, StudySettings]:
    """Loads the data set (a bad name or a missing folder fails here, before Ray starts), derives
    the data context of the search space and, for a new study, its settings."""
    from repmet.training import load_splits  # imports torch: only once the cheap checks passed

    if stored is not None:
        fixed = dict(stored.fixed)
        batch_budget = stored.batch_budget
    else:
        fixed = fixed_config(args, space)
        batch_budget = GPU_BATCH_BUDGET if args.gpus_per_trial > 0 else CPU_BATCH_BUDGET
    config = TrainingConfig.from_dict(fixed)
    splits = load_splits(config)
    labels = splits.train.labels.numpy()
    context = SpaceContext.from_labels(labels, model=config.model, batch_budget=batch_budget)
    if stored is not None:
        return context, stored

    losses = select_losses(space.losses, args.losses)
    baselines = {loss: space.baseline(loss, context) for loss in losses}
    counts = np.bincount(labels, minlength=splits.num_classes).tolist()
    for loss, baseline in baselines.items():
        TrainingConfig.from_dict({**fixed, **baseline.point, "loss": loss}).validate_against(counts)
    settings = StudySettings(
        space=space.name,
        losses=losses,
        fixed=fixed,
        num_samples=first_given(
            args.num_samples, SMOKE["num_samples"] if args.smoke else None, space.num_samples
        ),
        metric=validation_metric(args.select),
        mode=SELECTABLE_METRICS[args.select],
        seed=args.seed,
        scheduler=args.scheduler,
        sampler=args.sampler,
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


def fixed_config(args: argparse.Namespace, space: SearchSpace) -> dict[str, Any]:
    """The trial settings every trial shares: the space's defaults under the command line."""
    from repmet.data import default_data_root

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
    fixed["select"] = args.select
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


if __name__ == "__main__":
    sys.exit(main())
