"""Train one configuration without Ray and print its errors on train, validation and test.

    python -m repmet.train --loss magnet --dataset digits --iterations 500

Every field of :class:`repmet.config.TrialConfig` is a flag, in kebab case.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import typing
from collections.abc import Sequence
from typing import Any, TextIO

from repmet.config import FIELD_HELP, TrialConfig
from repmet.errors import RepmetError
from repmet.trial import TrainStats, Trial

ERROR_KINDS: tuple[str, ...] = ("simple", "magnet", "repmet", "unsupervised")


def build_parser() -> argparse.ArgumentParser:
    """One flag per configuration field, typed from the dataclass annotations."""
    parser = argparse.ArgumentParser(
        prog="python -m repmet.train",
        description="Train one metric-learning configuration and report its errors.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    hints = typing.get_type_hints(TrialConfig)
    for field in dataclasses.fields(TrialConfig):
        flag = "--" + field.name.replace("_", "-")
        kind = _scalar_type(hints[field.name])
        options: dict[str, Any] = {"default": field.default, "help": FIELD_HELP[field.name]}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = kind
            options["metavar"] = field.name.upper()
        parser.add_argument(flag, dest=field.name, **options)
    parser.add_argument("--save", metavar="PATH", help="write the final trial state to PATH")
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


def run(config: TrialConfig, *, save: str | None = None, stream: TextIO = sys.stderr) -> dict:
    """Trains ``config``, evaluating on validation every ``eval_every`` iterations, then on all
    three splits. Returns the final errors."""
    started = time.perf_counter()
    trial = Trial(config)
    stats: TrainStats | None = None
    while trial.iteration < config.iterations:
        chunk = min(config.eval_every, config.iterations - trial.iteration)
        stats = trial.train(chunk)
        val = trial.evaluate("val")["val"]
        print(
            f"iter {trial.iteration:>6}/{config.iterations}  loss {stats.loss:.4f}  "
            f"batch acc {stats.batch_accuracy:.3f}  val simple {100 * val['simple']:.2f}%  "
            f"{stats.examples_per_second:,.0f} ex/s",
            file=stream,
            flush=True,
        )
    assert stats is not None
    errors = trial.evaluate("train", "val", "test")
    print(
        f"\n{config.loss} on {config.dataset}: errors in % after {trial.iteration} iterations "
        f"({time.perf_counter() - started:.1f} s)"
    )
    print(format_error_table(errors, 1.0 - stats.batch_accuracy))
    if save:
        print(f"saved trial state to {trial.save(save)}")
    return errors


def main(argv: Sequence[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    save = args.pop("save")
    try:
        run(TrialConfig(**args), save=save)
    except RepmetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
