"""Train one configuration without Ray and print its metrics on train, validation and test.

    python -m repmet.train --loss magnet --dataset digits --iterations 500

Every field of :class:`repmet.config.TrainingConfig` is a flag, in kebab case.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from repmet.catalogue import LOSSES
from repmet.cli import (
    DefaultsHelpFormatter,
    OneLineArgumentParser,
    check_writable,
    program_name,
    run_command,
)
from repmet.config import FIELD_HELP, TrainingConfig
from repmet.errors import ConfigError
from repmet.metrics import all_metrics, metric

if TYPE_CHECKING:
    from repmet.schedule import ScheduledStep

PROG = program_name("python -m repmet.train")


def build_parser() -> argparse.ArgumentParser:
    """One flag per configuration field, typed from the dataclass annotations."""
    parser = OneLineArgumentParser(
        prog=PROG,
        description="Train one metric-learning configuration and report its errors.",
        formatter_class=DefaultsHelpFormatter,
    )
    hints = typing.get_type_hints(TrainingConfig)
    for field in dataclasses.fields(TrainingConfig):
        flag = "--" + field.name.replace("_", "-")
        kind = _scalar_type(hints[field.name])
        options: dict[str, Any] = {"default": field.default, "help": FIELD_HELP[field.name]}
        if field.name == "loss":
            options["help"] = "loss to train: " + ", ".join(LOSSES.in_order())
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = kind
            options["metavar"] = field.name.upper()
        parser.add_argument(flag, dest=field.name, **options)
    parser.add_argument(
        "--save",
        metavar="PATH",
        help="write the state of the reported (best validation) step to PATH, to measure it again",
    )
    return parser


def _scalar_type(hint: Any) -> type:
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return args[0] if args else hint


def format_metric_table(values: dict[str, dict[str, float]], batch_error: float) -> str:
    """Every metric in percent, one row per split, as a Markdown table (the batch error of the
    last training iterations on the train row)."""
    measured = [m for m in all_metrics() if any(m.name in row for row in values.values())]
    header = "| split | batch error | " + " | ".join(m.header for m in measured) + " |"
    rule = "|---" * (len(measured) + 2) + "|"
    rows = [header, rule]
    for split, row in values.items():
        batch = f"{100 * batch_error:.2f}" if split == "train" else "-"
        cells = " | ".join(f"{100 * row[m.name]:.2f}" if m.name in row else "-" for m in measured)
        rows.append(f"| {split} | {batch} | {cells} |")
    return "\n".join(rows)


def run(config: TrainingConfig, *, save: str | None = None, stream: TextIO = sys.stderr) -> dict:
    """Trains ``config``, measuring on validation every ``eval_every`` iterations, then measures
    the best validation step (the selection rule of :mod:`repmet.schedule`) on all three splits.
    Returns those metrics, ``{split: {name: value}}``."""
    # torch loads here, once the command line has been checked.
    from repmet.schedule import train_and_select
    from repmet.training import TrainingRun, use_threads

    started = time.perf_counter()
    use_threads(config)
    run = TrainingRun(config)

    selection = metric(config.select)

    def show(step: ScheduledStep) -> None:
        shown = f"val {selection.label} {100 * step.validation[selection.name]:.2f}%  "
        if selection.name != "map_at_r":
            shown += f"MAP@R {step.validation['map_at_r']:.3f}  "
        print(
            f"iter {step.iteration:>6}/{config.iterations}  loss {step.stats.loss:.4f}  "
            f"batch acc {step.stats.batch_accuracy:.3f}  {shown}"
            f"{step.stats.examples_per_second:,.0f} ex/s",
            file=stream,
            flush=True,
        )

    best = train_and_select(run, on_step=show)
    measurement = run.measure("train", "val", "test", centres=True)
    values = measurement.metrics
    print(
        f"\n{config.loss} on {config.dataset}: metrics in % at iteration {best.iteration}, the "
        f"best validation step of {config.iterations} iterations "
        f"({time.perf_counter() - started:.1f} s)"
    )
    print(format_metric_table(values, 1.0 - best.stats.batch_accuracy))
    if measurement.centre_metrics is not None:
        print("\nerrors in % against the loss's learned centres used as representatives:")
        print(format_metric_table(measurement.centre_metrics, 1.0 - best.stats.batch_accuracy))
    if save:
        print(f"saved the state of iteration {best.iteration} to {run.save(save)}")
    return values


def check_save_path(save: str) -> None:
    """Refuses, before training, a ``--save`` path that could not be written after it."""
    path = Path(save).expanduser()
    if not save.strip() or path.is_dir() or save.endswith("/"):
        raise ConfigError(f"--save {save} is a folder; give the path of a file to write")
    check_writable(path.absolute().parent, what="the folder of --save")


def main(argv: Sequence[str] | None = None) -> int:
    """Trains the configuration the command line describes; returns the exit status
    (:mod:`repmet.cli`)."""

    def body() -> int:
        args = vars(build_parser().parse_args(argv))
        save = args.pop("save")
        config = TrainingConfig(**args)
        if save is not None:
            check_save_path(save)
        from repmet.models import MODELS

        MODELS.get(config.model)  # before the data set loads
        run(config, save=save)
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
