"""What the report says about how a study was run (the settings table) and when its numbers cannot
mean much (the warnings at the top of the page and of ``results.md``).

Settings come from the manifest (``study.json``, read by
:func:`repmet.study_folder.manifest.read_manifest`), the configuration stored in the evaluated
checkpoint and the data set the report loaded; what the study did not record is said to be "not
recorded", never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from analysis.tables import TextTable, loss_label
from repmet.config import TrainingConfig
from repmet.data import DatasetSplits
from repmet.formatting import format_duration, format_percent, format_value
from repmet.metrics import label_of, lower_is_better
from repmet.protocols import CLOSED_SET
from repmet.study_folder.trials import StudyFolder, TrialStatus
from repmet.study_options import ASHA, NO_SCHEDULER, RANDOM_SAMPLER, TPE

#: A study whose trials train fewer iterations than this is smoke-sized: it checks the pipeline.
MIN_ITERATIONS = 100
#: Losses with fewer completed trials than this have barely been searched (and their parameter
#: importances are not computed).
MIN_TRIALS = 10
NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class Baseline:
    """A reference the trained losses are measured against: its label and its test value of the
    study's selection metric, in percent."""

    label: str
    value: float


# ------------------------------------------------------------------------------------- warnings


def smoke_reason(study: StudyFolder) -> str | None:
    """Why the study is smoke-sized (``--smoke`` on its command line, or trials shorter than
    :data:`MIN_ITERATIONS`), or None."""
    command = study.manifest.command
    iterations = study.fixed.get("iterations")
    reasons = []
    if "--smoke" in command.split():
        reasons.append("run with --smoke")
    if isinstance(iterations, int) and iterations < MIN_ITERATIONS:
        reasons.append(f"{iterations} training iterations per trial (< {MIN_ITERATIONS})")
    return "; ".join(reasons) or None


def failure_reasons(study: StudyFolder) -> dict[str, list[str]]:
    """Per loss, one entry per failed trial: its reason (why its configuration could not train,
    or the last line of its error)."""
    failed: dict[str, list[str]] = {}
    for loss, record in study.losses.items():
        for trial in record.trials:
            if trial.failed_by_configuration or trial.status is TrialStatus.FAILED:
                reason = trial.failure or "errored (see its error.txt)"
                failed.setdefault(loss, []).append(f"{trial.name}: {reason}")
    return failed


def completed_trials(study: StudyFolder) -> dict[str, int]:
    """Per loss, the trials that ended with a value: ran out or were stopped early, not failed."""
    return {
        loss: sum(
            trial.status in (TrialStatus.COMPLETED, TrialStatus.STOPPED)
            and not trial.failed_by_configuration
            for trial in record.trials
        )
        for loss, record in study.losses.items()
    }


def study_warnings(
    study: StudyFolder,
    *,
    select: str,
    test_values: Mapping[str, float],
    untrained: Baseline | None,
    repeats: int,
) -> list[str]:
    """One line per reason the report's numbers cannot mean much, most severe first.

    Args:
        select: the selection metric (a name of :mod:`repmet.metrics`).
        test_values: per loss, the test value of ``select`` of its evaluated checkpoint (percent).
        untrained: the untrained network's value of ``select`` on test, if measured.
        repeats: re-trained runs per loss (0: none).
    """
    lines = []
    name = label_of(select)
    lower = lower_is_better(select)
    smoke = smoke_reason(study)
    if smoke:
        lines.append(
            f"Smoke-sized study ({smoke}): it checks that the pipeline runs end to end; its "
            "numbers say nothing about the losses."
        )
    if untrained is not None:
        worse = {
            loss: value
            for loss, value in test_values.items()
            if (value > untrained.value if lower else value < untrained.value)
        }
        if worse:
            listed = ", ".join(
                f"{loss_label(loss)} {format_percent(value, unit='%')}"
                for loss, value in worse.items()
            )
            lines.append(
                f"Trained worse than untrained: the test {name} of {listed} is "
                f"{'higher' if lower else 'lower'} than the {untrained.label}'s "
                f"({format_percent(untrained.value, unit='%')}); these losses did not learn in "
                "this study."
            )
    unfinished = []
    for loss, record in study.losses.items():
        if record.finished < record.planned:
            unfinished.append(f"{loss_label(loss)} {record.finished} of {record.planned}")
    unfinished += [f"{loss_label(loss)} not started" for loss in study.not_started]
    if unfinished:
        lines.append(
            "Unfinished study: trials finished per loss: "
            + "; ".join(unfinished)
            + ". The tables show the best trial so far."
        )
    failed = failure_reasons(study)
    if failed:
        parts = []
        for loss, reasons in failed.items():
            planned = study.losses[loss].planned
            shown = "; ".join(reasons[:2]) + (
                f"; and {len(reasons) - 2} more" if len(reasons) > 2 else ""
            )
            parts.append(f"{loss_label(loss)} {len(reasons)} of {planned} ({shown})")
        lines.append("Failed trials: " + " | ".join(parts) + ".")
    few = {loss: count for loss, count in completed_trials(study).items() if count < MIN_TRIALS}
    if few:
        listed = ", ".join(f"{loss_label(loss)} {count}" for loss, count in few.items())
        lines.append(
            f"Few trials: completed trials per loss {listed} (< {MIN_TRIALS}); the search has "
            "explored little, and parameter importances are not computed."
        )
    if repeats == 0:
        lines.append(
            "One training run per loss (no --repeats): differences between losses may be seed "
            "noise; analysis/report.py --repeats 3 re-trains each best configuration and adds a "
            "verdict with confidence intervals."
        )
    return lines


# ------------------------------------------------------------------------------------- settings


def _when(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def duration_text(study: StudyFolder) -> str:
    manifest = study.manifest
    started, finished = _when(manifest.started), _when(manifest.finished)
    parts = []
    if started is not None:
        parts.append(f"started {started:%Y-%m-%d %H:%M:%S %Z}".strip())
    if finished is not None and started is not None:
        parts.append(f"finished {format_duration((finished - started).total_seconds())} later")
    elif started is not None:
        parts.append("not finished")
    if manifest.elapsed_s > 0:  # 0: not recorded (a study made before the manifest kept it)
        parts.append(f"{format_duration(manifest.elapsed_s)} of running time")
    trial_seconds = [
        float(t.steps[-1].metrics.get("time_total_s", 0.0) or 0.0)
        for record in study.losses.values()
        for t in record.trials
        if t.steps
    ]
    if trial_seconds:
        parts.append(
            f"trials ran {format_duration(sum(trial_seconds))} in total (Tune's time_total_s, "
            "summed)"
        )
    return "; ".join(parts) or NOT_RECORDED


def hardware_text(study: StudyFolder) -> str:
    """What the study recorded about where it ran: the manifest's ``hardware`` (if recorded), the
    trials' device and reserved resources, and the hosts named in their results."""
    manifest = study.manifest
    parts = []
    if manifest.hardware:
        parts.append(
            ", ".join(f"{key} {_format(value)}" for key, value in manifest.hardware.items())
        )
    else:
        parts.append(f"machine {NOT_RECORDED}")
    # The study's device: the evaluated configuration carries the report's own (--device).
    device = study.fixed.get("device")
    settings = study.settings
    if device is not None:
        parts.append(f"trials on {device}")
    parts.append(
        f"{_format(settings.cpus_per_trial)} CPU and {_format(settings.gpus_per_trial)} GPU "
        "reserved per trial"
    )
    hosts = sorted(
        {
            str(t.steps[-1].metrics["hostname"])
            for record in study.losses.values()
            for t in record.trials
            if t.steps and t.steps[-1].metrics.get("hostname")
        }
    )
    if hosts:
        parts.append(f"trials ran on host{'s' if len(hosts) > 1 else ''} {', '.join(hosts)}")
    return "; ".join(parts)


def _format(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_format(v) for v in value) or "none"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_format(v)}" for k, v in value.items())
    return format_value(value, digits=6)


def data_text(config: TrainingConfig | None, splits: DatasetSplits | None, fixed: Mapping) -> str:
    dataset = config.dataset if config is not None else fixed.get("dataset", NOT_RECORDED)
    if splits is None:
        return f"{dataset} (not loaded)"
    channels, height, width = splits.image_shape
    classes = {split: len(names) for split, names in (splits.split_classes or {}).items()}
    if splits.protocol == CLOSED_SET:
        counted = f"{splits.num_classes} classes"
    else:
        counted = (
            f"class-disjoint protocol, fold {config.fold if config else '?'}: "
            f"{classes['train']} / {classes['val']} / {classes['test']} classes"
        )
    text = (
        f"{dataset}: {len(splits.train):,} train / {len(splits.val):,} validation / "
        f"{len(splits.test):,} test examples, {counted}, {channels}x{height}x{width} inputs"
    )
    if config is not None:
        text += f", split seed {config.split_seed}"
        text += ", training augmentation on" if config.augment else ""
    return text


def model_text(config: TrainingConfig | None, searched: Sequence[str], fixed: Mapping) -> str:
    if config is None:
        return str(fixed.get("model", NOT_RECORDED))
    text = config.model
    extras = []
    if config.pretrained:
        extras.append("pretrained")
    if config.weights:
        extras.append(f"weights {config.weights}")
    if config.freeze_backbone:
        extras.append("frozen backbone")
    if "embedding_dim" in searched:
        extras.append("embedding size searched")
    else:
        extras.append(f"{config.embedding_dim}-d embedding")
    return f"{text} ({', '.join(extras)})"


def settings_table(
    study: StudyFolder,
    *,
    config: TrainingConfig | None,
    splits: DatasetSplits | None,
    searched: Sequence[str],
    repeats: int,
    repeat_seeds: str,
) -> TextTable:
    """How the study was run, one setting per row."""
    manifest, settings = study.manifest, study.settings
    fixed = study.fixed
    iterations = config.iterations if config is not None else fixed.get("iterations")
    eval_every = config.eval_every if config is not None else fixed.get("eval_every")
    schedulers = {
        ASHA: "ASHA (stops poor trials early on the selection metric)",
        NO_SCHEDULER: "none (every trial trains all its iterations)",
    }
    samplers = {TPE: "Optuna TPE", RANDOM_SAMPLER: "Optuna random sampling"}
    concurrent = settings.max_concurrent
    smoke = smoke_reason(study)
    losses = ", ".join(loss_label(loss) for loss in [*study.losses, *study.not_started])
    rows = [
        (
            "Study",
            f"{study.name} (space {settings.space}, study format {manifest.version})",
        ),
        ("Losses", losses),
        ("Data set", data_text(config, splits, fixed)),
        ("Model", model_text(config, searched, fixed)),
        (
            "Training per trial",
            f"{iterations} iterations, validation every {eval_every}"
            + (f" (smoke-sized: {smoke})" if smoke else ""),
        ),
        (
            "Selection",
            f"{study.metric}, {'lowest' if study.mode == 'min' else 'highest'} value "
            "over each trial's validation steps; the test split is read only by this "
            "report",
        ),
        ("Trials per loss", str(settings.num_samples)),
        (
            "Sampler",
            f"{samplers.get(settings.sampler, settings.sampler)}, seed {settings.seed}",
        ),
        ("Scheduler", schedulers.get(settings.scheduler, settings.scheduler)),
        (
            "Parallelism",
            f"{f'at most {concurrent}' if concurrent else 'as many as fit'} trials at once per "
            f"loss; {settings.max_failures} retries of an errored trial",
        ),
        (
            "Seeds",
            f"trials {fixed.get('seed', config.seed if config else NOT_RECORDED)}, data "
            f"split {config.split_seed if config else NOT_RECORDED}, sampler "
            f"{settings.seed}",
        ),
        ("Hardware", hardware_text(study)),
        ("Duration", duration_text(study)),
        (
            "Repeats",
            f"{repeats} re-trained runs per loss, seeds {repeat_seeds}"
            if repeats
            else "none (one run per loss)",
        ),
        ("Command", manifest.command or NOT_RECORDED),
    ]
    return TextTable(
        title="Settings",
        header=("Setting", "Value"),
        rows=tuple(rows),
        caption="How the study was run, from its manifest (study.json), the configuration stored "
        "in the evaluated checkpoints and the data set as loaded for this report.",
    )
