"""Runs a hyperparameter study: ``python study/run.py --space repmet``.

Every loss of the search space is searched side by side in the study's one Ray Tune experiment, each
with its own Optuna study in ``<study folder>/optuna.db`` (TPE, seeded, with the 2018 baseline as
first point), its own ASHA early stopping on the validation error and its own budget of trials.
The folder layout is described in :mod:`repmet.study_folder`.
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
from repmet.config import DEFAULT_SELECT, TrainingConfig
from repmet.errors import ConfigError
from repmet.metrics import metric
from repmet.protocols import CLOSED_SET
from repmet.study_folder import lock as study_lock
from repmet.study_folder.layout import EPISODES_DIR, FORMAT_VERSION, MANIFEST_FILE, StudyFolderError
from repmet.study_folder.manifest import FINISHED, PENDING, Manifest, StudySettings, read_manifest
from repmet.study_options import STUDY_OPTIONS, StudyOption, absolute_path, loss_names
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

#: How long a study stopping after SIGTERM may take before it ends at once. The orderly stop (the
#: running steps end, Tune saves its state, Ray shuts down) took 14 s with two trials running on a
#: busy 2-core machine; a batch scheduler sends SIGKILL 30 s after SIGTERM by default (Slurm's
#: KillWait).
SIGTERM_DEADLINE_S = 25.0


def space_default(space: SearchSpace, option: StudyOption) -> Any:
    """What a space gives an option that is not set: a setting of the study (the trial budget) or
    one of its fixed trial settings."""
    if option.setting is not None:
        return getattr(space, option.space_default)
    return space.fixed.get(option.space_default)


def shared(option: StudyOption) -> str:
    """An option's default as the spaces set it: one value when every space agrees (they do
    today), else each space's."""
    values = {
        name: space_default(SEARCH_SPACES.get(name), option) for name in SEARCH_SPACES.names()
    }
    if len(set(values.values())) == 1:
        return str(next(iter(values.values())))
    return ", ".join(f"{value} ({name})" for name, value in values.items())


def build_parser(*, defaults: bool = True) -> argparse.ArgumentParser:
    """One flag per entry of ``STUDY_OPTIONS``. Without ``defaults``, an option that is not given
    is left out of the namespace (which tells given options from defaults)."""
    parser = OneLineArgumentParser(
        prog=PROG,
        description="Search the hyperparameters of Magnet loss, RepMet and the cluster-margin loss "
        "with Ray Tune, Optuna (TPE) and ASHA. Each loss of the space gets its own Optuna study "
        "and ASHA bracket with the same trial budget; their trials run side by side in one Tune "
        "experiment.",
        formatter_class=DefaultsHelpFormatter,
    )
    spaces = "; ".join(
        f"{name} - {SEARCH_SPACES.get(name).description}" for name in SEARCH_SPACES.names()
    )
    for option in STUDY_OPTIONS:
        allowed = option.allowed()
        shown = option.help.replace("{spaces}", spaces)
        shown = shown.replace("{choices}", ", ".join(allowed or ()))
        if option.space_default is not None:
            shown = shown.replace("{default}", shared(option))
        kwargs: dict[str, Any] = {"help": shown, "default": option.default}
        if option.switch:
            # A switch that feeds the manifest is None when not given: it never overrides what is
            # stored or what the space sets.
            kwargs |= (
                {"action": "store_const", "const": True}
                if option.stored
                else {"action": "store_true", "default": False}
            )
        else:
            kwargs |= {"type": option.type, "choices": allowed, "metavar": option.metavar}
        if not defaults:
            kwargs["default"] = argparse.SUPPRESS
        parser.add_argument(option.flag, dest=option.dest, **kwargs)
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
    return set(vars(build_parser(defaults=False).parse_args(list(argv))))


def run(args: argparse.Namespace, *, command: str, explicit: Collection[str] = frozenset()) -> int:
    """Checks everything that can be checked without Ray, then runs (or continues) the study.

    Nothing is written before the checks pass, and nothing in the study folder is written or
    deleted before this run holds the folder's lock (:mod:`repmet.study_folder.lock`).
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
    for option in STUDY_OPTIONS:
        problem = option.problem(getattr(args, option.dest))
        if problem is not None:
            raise ConfigError(problem)
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
        stored = read_manifest(folder)
    except StudyFolderError as error:
        raise ConfigError(f"cannot resume from an unreadable study manifest: {error}") from None
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


def requested(
    option: StudyOption, args: argparse.Namespace, explicit: Collection[str] | None = None
) -> tuple[Any, str]:
    """What the command line asks of an option, as stored, and where it comes from: the value
    given (with ``explicit``, only one given explicitly), else ``--smoke``'s; None if neither."""
    value = getattr(args, option.dest) if explicit is None or option.dest in explicit else None
    note = ""
    if value is None and args.smoke and option.smoke is not None:
        value, note = option.smoke, " (from --smoke)"
    return option.stored_value(value), note


def resume_settings(
    args: argparse.Namespace, explicit: Collection[str], stored: StudySettings
) -> StudySettings:
    """The settings a resumed study runs with: the stored ones, with a larger ``--num-samples``
    if one is given. Every other option given with ``--resume`` must agree with them."""
    config = TrainingConfig.from_dict(stored.fixed)  # with the defaults a trial runs with
    conflicts: list[str] = []
    raised: dict[str, Any] = {}
    for option in STUDY_OPTIONS:
        if not option.stored:
            continue
        wanted, note = requested(option, args, explicit)
        if wanted is None:
            continue
        if option.setting is not None:
            have = getattr(stored, option.setting)
        else:
            have = getattr(config, option.fixed)
        if option.grows is not None:
            if wanted < have:
                conflicts.append(
                    f"{option.flag} {_shown(wanted)}{note} (stored: {_shown(have)}; {option.grows})"
                )
            elif wanted > have:
                raised[option.setting] = wanted
        elif not option.same(wanted, have):
            conflicts.append(f"{option.flag} {_shown(wanted)}{note} (stored: {_shown(have)})")
    if conflicts:
        raise ConfigError(
            "--resume continues a study with its stored settings, and the command line differs "
            f"from them: {'; '.join(conflicts)}"
        )
    return dataclasses.replace(stored, **raised) if raised else stored


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
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
    chosen = {
        option.setting: first_given(
            requested(option, args)[0],
            None if option.space_default is None else space_default(space, option),
        )
        for option in STUDY_OPTIONS
        if option.setting is not None
    }
    settings = StudySettings(
        **{**chosen, "space": space.name, "losses": losses},
        fixed=fixed,
        metric=metric(config.select).validation_key,
        mode=metric(config.select).direction,
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
    for option in STUDY_OPTIONS:
        value = requested(option, args)[0]
        if option.fixed is not None and value is not None:
            fixed[option.fixed] = value
    # The settings that follow from other options.
    if not args.data_root:
        fixed["data_root"] = absolute_path(str(default_data_root()))
    fixed["device"] = "cuda" if args.gpus_per_trial > 0 else "cpu"
    fixed["num_threads"] = max(1, math.floor(args.cpus_per_trial))
    fixed["seed"] = args.seed  # every trial's seed is the sampler's
    if args.select is None:
        fixed["select"] = DEFAULT_SELECT[fixed.get("protocol", CLOSED_SET)]
    return fixed


def first_given(*values: Any) -> Any:
    """The first value that is not None (an explicit option beats ``--smoke``, which beats the
    space's default)."""
    return next((value for value in values if value is not None), None)


def select_losses(available: tuple[str, ...], wanted: str | None) -> tuple[str, ...]:
    if wanted is None:
        return available
    chosen = loss_names(wanted)
    unknown = [loss for loss in chosen if loss not in available]
    if unknown or not chosen:
        raise ConfigError(
            f"--losses {wanted!r} must name losses of the space: {', '.join(available)}"
        )
    return chosen


if __name__ == "__main__":
    sys.exit(main())
