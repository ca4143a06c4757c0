"""The study report: ``python analysis/report.py [STUDY_DIR]``.

For every loss of a study it takes the trial with the lowest validation error, evaluates that
trial's best checkpoint on the whole train and test splits and writes the results table (Markdown
to stdout and ``results.md``, ``results.csv``, ``results.tex``), next to baselines (the untrained
network and 1-nearest-neighbour on raw pixels), the study's settings, warnings when its numbers
cannot mean much, the selected hyperparameters, the trial counts, and figures (a loss comparison,
validation curves, views of the Optuna searches, embedding maps) gathered on ``report.html``.

It reads only files, so a study folder copied to another machine works (``--data-root`` points at
the data there), and so does a study that is still running (the caption says how far each loss
has got). The command line is parsed before the heavy modules (torch, matplotlib, Optuna) load.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repmet.cli import (
    DefaultsHelpFormatter,
    OneLineArgumentParser,
    check_writable,
    program_name,
    run_command,
)
from repmet.config import MAX_INT, MAX_SEED

if TYPE_CHECKING:
    from analysis.report_data import Report

PROG = program_name("analysis/report.py")
FORMATS: tuple[str, ...] = ("markdown", "csv", "latex", "all")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = OneLineArgumentParser(
        prog=PROG,
        description="Results table, baselines and figures of a repmet study.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument(
        "study_dir",
        nargs="?",
        type=Path,
        help="the study folder (holding study.json); default: the most recently modified one "
        "under --storage",
    )
    parser.add_argument(
        "--storage",
        type=Path,
        default=Path("results"),
        help="where studies live (default: results)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="all",
        help="which table files to write (stdout always shows Markdown; default: all)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=0,
        help="re-train each loss's best configuration with N new seeds and report mean ± std",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="base seed of the repeats (seeds seed+1 .. seed+N; default: the configuration's seed)",
    )
    parser.add_argument(
        "--data-root", default=None, help="where the data set lives, if not where the study saw it"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="report folder (default: <study>/report)"
    )
    parser.add_argument("--no-plots", action="store_true", help="write the tables only")
    parser.add_argument(
        "--tsne", action="store_true", help="embedding maps by t-SNE instead of PCA (slower)"
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="auto",
        help="where to evaluate (default: auto, the GPU when there is one)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.repeats <= MAX_INT:
        parser.error(f"--repeats = {args.repeats} must be between 0 and {MAX_INT}")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED - args.repeats:
        parser.error(
            f"--seed = {args.seed} must be between 0 and {MAX_SEED - args.repeats} (the repeats "
            f"train with seeds seed+1 .. seed+N, at most {MAX_SEED})"
        )
    return args


def run(args: argparse.Namespace) -> Report:
    """Builds and writes the report the parsed command line asks for."""
    from repmet.study_folder.trials import find_latest_study, read_study

    study_path = args.study_dir if args.study_dir is not None else find_latest_study(args.storage)
    study = read_study(study_path)
    folder = args.out if args.out is not None else study.path / "report"
    # Before any evaluation work: a report that cannot be written is known at once.
    check_writable(folder, what="the report folder" if args.out is None else "--out")

    # The heavy modules (torch, matplotlib, Optuna) load once the command line and folders are
    # known to be usable.
    from analysis.render import markdown, write_report
    from analysis.report_builder import build_report, progress_to_stderr
    from analysis.scores import CheckpointLoader

    overrides: dict[str, Any] = {"device": args.device}
    if args.data_root is not None:
        overrides["data_root"] = args.data_root
    loader = CheckpointLoader(overrides=overrides, progress=progress_to_stderr)
    report = build_report(
        study,
        loader=loader,
        folder=folder,
        repeats=args.repeats,
        seed=args.seed,
        draw=not args.no_plots,
        tsne=args.tsne,
    )
    print(markdown(report))
    for path in write_report(report, folder, formats=args.format):
        progress_to_stderr(f"wrote {path}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Writes the report the command line asks for; returns the exit status (:mod:`repmet.cli`)."""

    def body() -> int:
        run(parse_args(argv))
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
