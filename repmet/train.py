"""Train one configuration without Ray and print its errors on train, validation and test.

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

if TYPE_CHECKING:
    from repmet.schedule import ScheduledStep

PROG = program_name("python -m repmet.train")
ERROR_KINDS: tuple[str, ...] = ("simple", "magnet", "repmet", "unsupervised")
RETRIEVAL_NAMES = {
    "p_at_1": "P@1", "r_precision": "R-precision", "map_at_r": "MAP@R", "nmi": "NMI", "ami": "AMI",
}  # fmt: skip


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


def format_error_table(errors: dict[str, dict[str, float]], batch_error: float) -> str:
    """The errors in percent, one row per split, as a Markdown table."""
    header = "| split | batch | " + " | ".join(ERROR_KINDS) + " |"
    rule = "|---" * (len(ERROR_KINDS) + 2) + "|"
    rows = [header, rule]
    for split, values in errors.items():
        batch = f"{100 * batch_error:.2f}" if split == "train" else "-"
        cells = " | ".join(f"{100 * values[kind]:.2f}" for kind in ERROR_KINDS)
        rows.append(f"| {split} | {batch} | {cells} |")
    return "\n".join(rows)


def run(config: TrainingConfig, *, save: str | None = None, stream: TextIO = sys.stderr) -> dict:
    """Trains ``config``, measuring on validation every ``eval_every`` iterations, then measures
    the best validation step (the selection rule of :mod:`repmet.schedule`) on all three splits.
    Returns those errors."""
    # torch loads here, once the command line has been checked.
    from repmet.schedule import train_and_select
    from repmet.training import TrainingRun, use_threads

    started = time.perf_counter()
    use_threads(config)
    run = TrainingRun(config)

    def show(step: ScheduledStep) -> None:
        print(
            f"iter {step.iteration:>6}/{config.iterations}  loss {step.stats.loss:.4f}  "
            f"batch acc {step.stats.batch_accuracy:.3f}  "
            f"val simple {100 * step.validation['error_simple']:.2f}%  "
            f"MAP@R {step.validation['map_at_r']:.3f}  "
            f"{step.stats.examples_per_second:,.0f} ex/s",
            file=stream,
            flush=True,
        )

    best = train_and_select(run, on_step=show)
    measurement = run.measure("train", "val", "test")
    errors = measurement.errors
    print(
        f"\n{config.loss} on {config.dataset}: errors in % at iteration {best.iteration}, the best "
        f"validation step of {config.iterations} iterations ({time.perf_counter() - started:.1f} s)"
    )
    print(format_error_table(errors, 1.0 - best.stats.batch_accuracy))
    if measurement.centre_errors is not None:
        print("\nerrors in % against the loss's learned centres used as representatives:")
        print(format_error_table(measurement.centre_errors, 1.0 - best.stats.batch_accuracy))
    retrieval = measurement.retrieval["test"]
    cells = [f"{label} {100 * retrieval[name]:.2f}" for name, label in RETRIEVAL_NAMES.items()]
    print("test retrieval in %: " + ", ".join(cells))
    if save:
        print(f"saved the state of iteration {best.iteration} to {run.save(save)}")
    return errors


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
