"""Runs a hyperparameter study: ``python study/run.py --space repmet``.

Each loss of the search space is searched by its own Ray Tune experiment (Optuna TPE, seeded, with
the 2018 baseline as first point; ASHA early stopping on the validation error) with its own Optuna
study in ``<study folder>/optuna.db``. The folder layout is described in :mod:`repmet.study_format`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shlex
import shutil
import socket
import sys
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from repmet.cli import (
    DefaultsHelpFormatter,
    OneLineArgumentParser,
    SigtermAsCtrlC,
    UsageError,
    check_writable,
    program_name,
    run_command,
)
from repmet.config import DEFAULT_SELECT, FIELD_HELP, MAX_INT, MAX_SEED, TrainingConfig
from repmet.errors import ConfigError
from repmet.metrics import METRICS, metric
from repmet.protocols import CLOSED_SET, PROTOCOLS
from repmet.study_format import (
    EPISODES_DIR,
    FINISHED,
    FORMAT_VERSION,
    MANIFEST_FILE,
    PENDING,
    Manifest,
    StudySettings,
)
from search_spaces import (
    CPU_BATCH_BUDGET,
    GPU_BATCH_BUDGET,
    SEARCH_SPACES,
    SearchSpace,
    SpaceContext,
)
from study import lock as study_lock

PROG = program_name("study/run.py")

#: Set before Ray is imported: they silence banners and warnings that say nothing about the study
#: (the token-auth banner, usage-stats notice, and snapshot warnings of fast trials).
QUIET_ENVIRONMENT = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",  # with RunConfig(verbose=0) the classic reporter prints nothing
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}
#: Set before Ray is imported when joining a cluster at an address: Ray would otherwise try a
#: cluster that does not answer for about 14 minutes (20 attempts of about 41 s). With these, an
#: address whose port is open but is no Ray cluster fails after 2 attempts of about 8 s. They
#: bound Ray's connection attempts only; the environment can override each one.
CONNECT_ENVIRONMENT = {
    "RAY_gcs_server_port_wait_time_s": "2",
    "RAY_py_gcs_connect_timeout_s": "3",
    "RAY_gcs_rpc_server_connect_timeout_s": "2",
}

#: How long the TCP check of ``--address`` waits for the cluster's port to answer.
CONNECT_TIMEOUT_S = 5.0

#: ``--smoke`` shrinks the study to a quick end-to-end check (explicit options still win).
SMOKE = {"num_samples": 2, "max_iterations": 20, "eval_every": 10}
#: The trial fields of the class-disjoint protocol and its few-shot episodes, each a flag of the
#: same name (generated from ``TrainingConfig``), stored in the manifest's fixed settings.
PROTOCOL_FIELDS = (
    "protocol", "fold", "few_shot_ways", "few_shot_queries", "few_shot_episodes",
    "few_shot_val_episodes",
)  # fmt: skip
#: Trial settings that a study can switch on for every trial (off by default, as in a single run).
TRIAL_SWITCHES = ("augment", "amp")

DEFAULT_MAX_FAILURES = 2
#: How long a study stopping after SIGTERM may take before it ends at once. The orderly stop (the
#: running steps end, Tune saves its state, Ray shuts down) took 14 s with two trials running on a
#: busy 2-core machine; a batch scheduler sends SIGKILL 30 s after SIGTERM by default (Slurm's
#: KillWait).
SIGTERM_DEADLINE_S = 25.0
#: The most CPUs or GPUs one trial may ask for (no node has more).
MAX_RESOURCES = 1_000_000.0


def finite_float(text: str) -> float:
    """An argparse type: a finite number (``float`` alone accepts nan and inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def shared(field: str) -> str:
    """A setting's default as the spaces set it: one value when every space agrees (they do
    today), else each space's."""
    values = {
        name: getattr(space, field) if field == "num_samples" else space.fixed.get(field)
        for name, space in ((name, SEARCH_SPACES.get(name)) for name in SEARCH_SPACES.names())
    }
    if len(set(values.values())) == 1:
        return str(next(iter(values.values())))
    return ", ".join(f"{value} ({name})" for name, value in values.items())


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
    add("--dataset", default=None, help=f"data set (default: {shared('dataset')})")
    add("--data-root", default=None, help="data folder (default: $REPMET_DATA_ROOT or ./data)")
    add("--model", default=None, help=f"embedding network (default: {shared('model')})")
    defaults = TrainingConfig()
    for field in PROTOCOL_FIELDS:
        default = getattr(defaults, field)
        add(
            "--" + field.replace("_", "-"),
            type=type(default),
            default=None,
            choices=PROTOCOLS if field == "protocol" else None,
            help=f"{FIELD_HELP[field]} (default: {default})",
        )
    add(
        "--num-samples",
        type=int,
        default=None,
        help=f"trials per loss (default: {shared('num_samples')}); with --resume, a larger number "
        "adds trials "
        "to the study",
    )
    add(
        "--max-iterations",
        type=int,
        default=None,
        help=f"training iterations of a full trial (default: {shared('iterations')})",
    )
    add(
        "--eval-every",
        type=int,
        default=None,
        help=f"iterations between validation evaluations (default: {shared('eval_every')})",
    )
    add(
        "--kmeans-every",
        type=int,
        default=None,
        help="measure the k-means-based validation metrics (unsupervised error, NMI, AMI) at "
        "every this many validations and at the last; the selection metric is measured at every "
        "one (default: 1, every validation)",
    )
    add("--cpus-per-trial", type=finite_float, default=1.0, help="CPUs reserved per trial")
    add(
        "--gpus-per-trial",
        type=finite_float,
        default=0.0,
        help="GPUs per trial (fractions share a GPU)",
    )
    add("--max-concurrent", type=int, default=None, help="most trials at once (default: all fit)")
    add(
        "--max-failures",
        type=int,
        default=DEFAULT_MAX_FAILURES,
        help="retries of a trial that raised an error (a trial that fails for its own "
        "configuration, e.g. a diverging loss, is not retried)",
    )
    add(
        "--scheduler",
        default="asha",
        choices=("asha", "none"),
        help="early stopping: asha, or none (every trial runs out)",
    )
    add(
        "--sampler",
        default="tpe",
        choices=("tpe", "random"),
        help="Optuna sampler: tpe, or random (a baseline for TPE)",
    )
    add(
        "--select",
        default=None,
        choices=METRICS.in_order(),
        metavar="METRIC",
        help="validation metric that selects each trial's best step and the best trial "
        "(default: error_simple; map_at_r under --protocol class-disjoint): "
        + ", ".join(METRICS.in_order()),
    )
    add(
        "--seed",
        type=int,
        default=0,
        help=f"seed of the TPE sampler and of every trial (0..{MAX_SEED})",
    )
    add("--storage", default="results", help="folder holding study folders")
    add(
        "--name",
        default=None,
        help="study folder name under --storage, one plain folder name (default: the space)",
    )
    add(
        "--address",
        default=None,
        help="join a running Ray cluster: auto, HOST:PORT or ray://HOST:PORT",
    )
    add(
        "--resume",
        action="store_true",
        help="continue a study with its stored settings (options given with it must agree with "
        "them, except a larger --num-samples)",
    )
    add(
        "--overwrite",
        action="store_true",
        help="delete an existing study folder (only one holding a study of this suite) and start "
        "anew",
    )
    for switch in TRIAL_SWITCHES:
        add(f"--{switch}", action="store_true", help=f"every trial: {FIELD_HELP[switch]}")
    add("--smoke", action="store_true", help="a quick check: 2 trials per loss, 20 iterations")
    add("--verbose", action="store_true", help="show Ray's and Tune's own output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the study the command line describes; returns the exit status (:mod:`repmet.cli`)."""
    given = list(sys.argv[1:] if argv is None else argv)
    command = actual_command(None if argv is None else given)

    def body() -> int:
        args = build_parser().parse_args(given)
        return run(args, command=command, explicit=explicit_options(given))

    # Ctrl-C, or SIGTERM from a batch scheduler: nothing is broken, the study stops where it is
    # (exit status 130 or 143) and --resume continues it.
    sigterm = SigtermAsCtrlC(
        PROG,
        deadline_s=SIGTERM_DEADLINE_S,
        late=f"the study did not stop in {SIGTERM_DEADLINE_S:g} s (the signal may have stopped "
        "Ray too) and ended at once; continue the study with --resume",
    )
    return run_command(PROG, body, sigterm=sigterm)


def actual_command(argv: Sequence[str] | None) -> str:
    """The command line of this run, with the interpreter that ran it, for the manifest."""
    original = getattr(sys, "orig_argv", None)
    if argv is None and original:
        return shlex.join([sys.executable, *original[1:]])
    return shlex.join([sys.executable, PROG, *(argv or [])])


def explicit_options(argv: Sequence[str]) -> set[str]:
    """The destinations of the options given on the command line (not left at their default)."""
    parser = build_parser()
    for action in parser._actions:  # argparse has no public way to tell given from default
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(list(argv))))


def run(args: argparse.Namespace, *, command: str, explicit: Collection[str] = frozenset()) -> int:
    """Checks everything that can be checked without Ray, then runs (or continues) the study.

    Nothing is written before the checks pass, and nothing in the study folder is written or
    deleted before this run holds the folder's lock (:mod:`study.lock`).
    """
    configure_logging(verbose=args.verbose)
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other; choose one")
    check_arguments(args)
    folder = study_folder(args)
    stored = inspect_folder(folder, args)
    settings = resume_settings(args, explicit, stored.settings) if stored else None
    if args.address is not None:
        check_reachable(args.address)
    if stored is not None and settings == stored.settings and all_finished(stored):
        print(
            f"Study {folder.name!r} at {folder}: every loss finished earlier; nothing to do "
            "(--resume --num-samples N with a larger N adds trials)"
        )
        return 0
    space = SEARCH_SPACES.get(settings.space if settings else args.space)
    context, settings = prepare(args, space, settings)

    # Ray (and the trainable, with it) is imported only once the command line has been checked,
    # so that --help and mistakes answer at once.
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if args.address not in (None, "local"):
        for name, value in CONNECT_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
    from study import tuning

    started_ray = tuning.connect(address=args.address, verbose=args.verbose)
    try:
        tuning.check_resources(settings)
        with study_lock.acquire(folder, command=command):
            manifest = claim(folder, args, explicit, settings, command=command)
            return tuning.run_losses(
                tuning.Study(folder=folder, manifest=manifest, context=context),
                verbose=args.verbose,
            )
    finally:
        if started_ray:
            tuning.disconnect()


# ------------------------------------------------------------------------- checks


def check_arguments(args: argparse.Namespace) -> None:
    """The options' values on their own: ranges, the study name, the address, the space."""
    counts = (
        ("num_samples", "--num-samples", 1),
        ("max_iterations", "--max-iterations", 1),
        ("eval_every", "--eval-every", 1),
        ("kmeans_every", "--kmeans-every", 1),
        ("max_concurrent", "--max-concurrent", 1),
        ("max_failures", "--max-failures", 0),
    )
    for dest, flag, low in counts:
        value = getattr(args, dest)
        if value is not None and not low <= value <= MAX_INT:
            raise ConfigError(f"{flag} {value} must be between {low} and {MAX_INT}")
    if not 0 <= args.seed <= MAX_SEED:
        raise ConfigError(f"--seed {args.seed} must be between 0 and {MAX_SEED}")
    if not 0 < args.cpus_per_trial <= MAX_RESOURCES:
        raise ConfigError(
            f"--cpus-per-trial {args.cpus_per_trial:g} must be > 0 and at most {MAX_RESOURCES:g}"
        )
    if not 0 <= args.gpus_per_trial <= MAX_RESOURCES:
        raise ConfigError(
            f"--gpus-per-trial {args.gpus_per_trial:g} must be >= 0 and at most {MAX_RESOURCES:g}"
        )
    if args.name is not None:
        check_name(args.name)
    parse_address(args.address)
    if not args.resume:
        space = SEARCH_SPACES.get(args.space)
        select_losses(space.losses, args.losses)


def check_name(name: str) -> None:
    """A study name is one plain folder name: it can only ever name a folder under --storage."""
    separators = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    if (
        not name.strip()
        or name in (".", "..")
        or any(sep in name for sep in separators)
        or "\0" in name
        or len(os.fsencode(name)) > 255  # NAME_MAX of the common filesystems
    ):
        raise ConfigError(
            f"--name {name!r} must be one plain folder name (no path separator, not '.' or '..', "
            "at most 255 bytes)"
        )


def study_folder(args: argparse.Namespace) -> Path:
    """``<storage>/<name>``; a storage that is a file is refused."""
    if "\0" in args.storage:
        raise ConfigError("--storage must not contain a NUL character")
    storage = Path(args.storage).expanduser()
    if storage.exists() and not storage.is_dir():
        raise ConfigError(f"--storage {args.storage} is a file, not a folder")
    return storage.resolve() / (args.name or args.space)


def is_study(folder: Path) -> bool:
    """Whether ``folder`` holds a study of this suite: its manifest, with a format version (format
    1 had none, but its settings fields)."""
    try:
        values = json.loads((folder / MANIFEST_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    if not isinstance(values, dict):
        return False
    version = values.get("version")
    if isinstance(version, int) and not isinstance(version, bool):
        return True
    return {"space", "losses", "fixed", "status"} <= set(values)


def occupied(folder: Path) -> bool:
    """Whether ``folder`` holds anything besides a lock file (left by a run that stopped before it
    wrote its manifest)."""
    return folder.is_dir() and any(p.name != study_lock.LOCK_FILE for p in folder.iterdir())


def inspect_folder(folder: Path, args: argparse.Namespace) -> Manifest | None:
    """What is at ``folder`` against what the command asks for, reading only. Returns the stored
    manifest for ``--resume``."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file, not a study folder; choose another --name")
    holder = study_lock.holder_of(folder) if folder.is_dir() else None
    if holder is not None:
        raise study_lock.StudyInUse(study_lock.in_use_message(folder, holder))
    if args.resume:
        stored = read_resumable(folder)
        check_writable(folder, what="the study folder")
        return stored
    check_replaceable(folder, overwrite=args.overwrite)
    check_writable(folder, what="the study folder")
    return None


def check_replaceable(folder: Path, *, overwrite: bool) -> None:
    """A new study may start at ``folder`` if it holds nothing, or with ``--overwrite`` if it holds
    a study of this suite (its manifest is there); anything else is refused."""
    if not occupied(folder):
        return
    if not overwrite:
        raise ConfigError(
            f"the study folder {folder} already exists; pass --resume to continue it or "
            "--overwrite to replace it"
        )
    if not is_study(folder):
        raise ConfigError(
            f"--overwrite refuses to delete {folder}: it is not a study of this suite (no "
            f"{MANIFEST_FILE} manifest in it); choose another --name or remove it yourself"
        )


def read_resumable(folder: Path) -> Manifest:
    if not (folder / MANIFEST_FILE).is_file():
        raise ConfigError(f"cannot resume: there is no study at {folder}")
    try:
        stored = Manifest.read(folder)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(
            f"cannot resume: the study manifest {folder / MANIFEST_FILE} is damaged "
            f"({type(error).__name__}: {error})"
        ) from None
    if stored.version != FORMAT_VERSION:
        raise ConfigError(
            f"the study at {folder} was written in study format {stored.version} by an earlier "
            f"release (this one writes format {FORMAT_VERSION}); its report can still be "
            "made, but it cannot be resumed: start a new study"
        )
    return stored


def all_finished(manifest: Manifest) -> bool:
    return all(status == FINISHED for status in manifest.status.values())


def parse_address(address: str | None) -> tuple[str, int] | None:
    """``(host, port)`` of an explicit address; None for a local Ray or ``auto``."""
    if address is None or address in ("auto", "local"):
        return None
    rest = address.removeprefix("ray://")
    host, separator, port = rest.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [IPv6]:port
    if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"--address {address!r} must be auto, local, HOST:PORT or ray://HOST:PORT"
        )
    return host, int(port)


def check_reachable(address: str) -> None:
    """Refuses at once a cluster whose port does not answer (Ray would keep retrying)."""
    target = parse_address(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {reason}") from None


def resume_settings(
    args: argparse.Namespace, explicit: Collection[str], stored: StudySettings
) -> StudySettings:
    """The settings a resumed study runs with: the stored ones, with a larger ``--num-samples``
    if one is given. Every other option given with ``--resume`` must agree with them."""
    smoke = SMOKE if args.smoke else {}
    conflicts: list[str] = []

    def given(dest: str) -> Any:
        return getattr(args, dest) if dest in explicit else None

    def compare(flag: str, wanted: Any, have: Any, note: str = "") -> None:
        if wanted is not None and wanted != have:
            conflicts.append(f"{flag} {_shown(wanted)}{note} (stored: {_shown(have)})")

    fixed = stored.fixed
    compare("--space", given("space"), stored.space)
    if given("losses") is not None:
        wanted = tuple(loss.strip() for loss in args.losses.split(",") if loss.strip())
        if sorted(wanted) != sorted(stored.losses):
            conflicts.append(f"--losses {args.losses} (stored: {','.join(stored.losses)})")
    compare("--dataset", given("dataset"), fixed.get("dataset"))
    if given("data_root") is not None:
        compare("--data-root", str(Path(args.data_root).resolve()), fixed.get("data_root"))
    compare("--model", given("model"), fixed.get("model"))
    defaults = TrainingConfig()
    for field in PROTOCOL_FIELDS:
        stored_value = fixed.get(field, getattr(defaults, field))
        compare("--" + field.replace("_", "-"), given(field), stored_value)
    for switch in TRIAL_SWITCHES:
        compare(f"--{switch}", given(switch), fixed.get(switch, False))
    for dest, key, flag in (
        ("max_iterations", "iterations", "--max-iterations"),
        ("eval_every", "eval_every", "--eval-every"),
        ("kmeans_every", "kmeans_every", "--kmeans-every"),
    ):
        note = "" if given(dest) is not None or dest not in smoke else " (from --smoke)"
        compare(flag, first_given(given(dest), smoke.get(dest)), fixed.get(key), note)
    compare("--cpus-per-trial", given("cpus_per_trial"), stored.cpus_per_trial)
    compare("--gpus-per-trial", given("gpus_per_trial"), stored.gpus_per_trial)
    compare("--max-concurrent", given("max_concurrent"), stored.max_concurrent)
    compare("--max-failures", given("max_failures"), stored.max_failures)
    compare("--scheduler", given("scheduler"), stored.scheduler)
    compare("--sampler", given("sampler"), stored.sampler)
    compare("--select", given("select"), stored.select)
    compare("--seed", given("seed"), stored.seed)
    samples = first_given(given("num_samples"), smoke.get("num_samples"))
    if samples is not None and samples < stored.num_samples:
        note = "" if given("num_samples") is not None else " (from --smoke)"
        conflicts.append(
            f"--num-samples {samples}{note} (stored: {stored.num_samples}; a study can get more "
            "trials, not fewer)"
        )
    if conflicts:
        raise ConfigError(
            "--resume continues a study with its stored settings, and the command line differs "
            f"from them: {'; '.join(conflicts)}"
        )
    if samples is not None and samples > stored.num_samples:
        return dataclasses.replace(stored, num_samples=samples)
    return stored


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def claim(
    folder: Path,
    args: argparse.Namespace,
    explicit: Collection[str],
    settings: StudySettings,
    *,
    command: str,
) -> Manifest:
    """Under the lock: checks the folder again (another run may have changed it since the first
    look), clears it for ``--overwrite``, and writes the manifest of this run."""
    if args.resume:
        manifest = read_resumable(folder)
        if resume_settings(args, explicit, manifest.settings) != settings:
            raise ConfigError(
                f"the study at {folder} changed while this run was starting; run it again"
            )
        if settings.num_samples > manifest.settings.num_samples:
            # More trials for every loss: finished losses run again, from where they ended.
            manifest.settings = settings
            manifest.status = {
                loss: PENDING if status == FINISHED else status
                for loss, status in manifest.status.items()
            }
            manifest.finished = None
        manifest.command = command
        manifest.write()
        return manifest
    check_replaceable(folder, overwrite=args.overwrite)
    if occupied(folder):
        clear_study(folder)
    manifest = Manifest.create(folder, settings, command=command)
    manifest.write()
    record_episodes(folder, settings)
    return manifest


def record_episodes(folder: Path, settings: StudySettings) -> None:
    """Writes the few-shot episodes of a class-disjoint study to ``<study>/episodes/``: the
    episodes that every loss, trial and report repeat draws from the same seed."""
    config = TrainingConfig.from_dict(settings.fixed)
    if config.protocol == CLOSED_SET:
        return
    from repmet.measures import write_episodes
    from repmet.training import load_splits

    splits = load_splits(config, cached=True)
    labels = {"val": splits.val.labels, "test": splits.test.labels}
    write_episodes(config, labels, folder / EPISODES_DIR)


def clear_study(folder: Path) -> None:
    """Deletes everything in a study folder except its lock file; the manifest goes last, so that
    a delete cut short still leaves a folder that ``--overwrite`` recognises as a study."""
    for entry in folder.iterdir():
        if entry.name in (study_lock.LOCK_FILE, MANIFEST_FILE):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    (folder / MANIFEST_FILE).unlink(missing_ok=True)


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
    if stored is not None:
        fixed = dict(stored.fixed)
        batch_budget = stored.batch_budget
    else:
        fixed = fixed_config(args, space)
        batch_budget = GPU_BATCH_BUDGET if args.gpus_per_trial > 0 else CPU_BATCH_BUDGET
    config = TrainingConfig.from_dict(fixed)
    # These import torch: only once the cheap checks passed.
    from repmet.data import DATASETS
    from repmet.models import MODELS
    from repmet.training import load_splits

    DATASETS.get(config.dataset)
    MODELS.get(config.model)
    splits = load_splits(config, cached=True)  # kept for the trials (study.tuning.shared_data)
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
        metric=metric(config.select).validation_key,
        mode=metric(config.select).direction,
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
        "kmeans_every": args.kmeans_every,
    }
    fixed.update({key: value for key, value in overrides.items() if value is not None})
    # Tune runs each trial in its own folder: the data root must not depend on the directory.
    root = Path(args.data_root) if args.data_root else default_data_root()
    fixed["data_root"] = str(root.resolve())
    fixed["device"] = "cuda" if args.gpus_per_trial > 0 else "cpu"
    fixed["num_threads"] = max(1, math.floor(args.cpus_per_trial))
    fixed["seed"] = args.seed
    fixed.update({f: getattr(args, f) for f in PROTOCOL_FIELDS if getattr(args, f) is not None})
    protocol = fixed.get("protocol", CLOSED_SET)
    fixed["select"] = args.select if args.select is not None else DEFAULT_SELECT[protocol]
    fixed.update({switch: True for switch in TRIAL_SWITCHES if getattr(args, switch)})
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
