"""Every loss's default configuration on unseen classes: trained on the training classes of a
class-disjoint split, measured on its test classes (few-shot accuracy and MAP@R), over several
seeds, beside the untrained network and raw pixels on the same episodes.

    python benchmarks/bench_unseen.py                      # glyphs, seeds 0 1 2, 500 iterations
    python benchmarks/bench_unseen.py --quick              # two losses, one seed, 50 iterations

Each run is what ``python -m repmet.train --loss LOSS --dataset glyphs --protocol class-disjoint
--seed S`` trains and selects (its best validation MAP@R step); the runs of one loss go to worker
processes side by side (``--jobs``). Prints a Markdown table (mean ± sample sd over the seeds, in
percent) and, last, one summary line.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

#: The columns: (metric name, header).
COLUMNS = (
    ("fewshot_1shot_simple", "5-way 1-shot"),
    ("fewshot_5shot_simple", "5-way 5-shot"),
    ("fewshot_5shot_repmet", "5-way 5-shot (RepMet rule)"),
    ("map_at_r", "MAP@R"),
)


def _measured(loss: str, seed: int, args: argparse.Namespace, *, train: bool = True) -> dict:
    """The test metrics of a loss's default configuration, trained and selected (or not)."""
    import torch

    from repmet.config import TrainingConfig
    from repmet.schedule import train_and_select
    from repmet.training import TrainingRun

    torch.set_num_threads(args.threads)
    config = TrainingConfig(
        loss=loss, dataset=args.dataset, protocol="class-disjoint", seed=seed,
        iterations=args.iterations, num_threads=args.threads,
    )  # fmt: skip
    run = TrainingRun(config)
    if train:
        train_and_select(run)
    return run.measure("test").metrics["test"]


def _raw_pixels(args: argparse.Namespace) -> dict[str, float]:
    from analysis.scores import raw_pixel_unseen
    from repmet.config import TrainingConfig
    from repmet.measures import FewShotSettings
    from repmet.training import load_splits

    config = TrainingConfig(dataset=args.dataset, protocol="class-disjoint")
    settings = FewShotSettings.of(config, "test", variance=1.0)
    return raw_pixel_unseen(load_splits(config), settings, seed=0)[0]


def _cell(runs: Sequence[dict[str, float]], name: str) -> str:
    values = [100.0 * run[name] for run in runs if name in run]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="glyphs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--losses", default=None, help="comma-separated (default: every loss)")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side")
    parser.add_argument("--quick", action="store_true", help="2 losses, seed 0, 50 iterations")
    args = parser.parse_args(argv)
    from repmet.catalogue import LOSSES

    losses = args.losses.split(",") if args.losses else LOSSES.in_order()
    if args.quick:
        losses, args.seeds, args.iterations = ["repmet-v1", "softmax"], [0], 50
    started = time.perf_counter()
    rows: dict[str, list[dict[str, float]]] = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {
            loss: [pool.submit(_measured, loss, seed, args) for seed in args.seeds]
            for loss in losses
        }
        untrained = [
            pool.submit(_measured, "repmet-v1", seed, args, train=False) for seed in args.seeds
        ]
        raw = pool.submit(_raw_pixels, args)
        for loss, runs in futures.items():
            rows[loss] = [run.result() for run in runs]
            cells = " | ".join(_cell(rows[loss], name) for name, _ in COLUMNS)
            print(f"{loss}: | {cells} | ({time.perf_counter() - started:.0f} s)", flush=True)
        rows["untrained network (repmet-v1 config)"] = [run.result() for run in untrained]
        rows["raw pixels"] = [raw.result()]
    seeds = " ".join(str(s) for s in args.seeds)
    print(
        f"\n{args.dataset}, class-disjoint protocol, test classes; {args.iterations} iterations, "
        f"seeds {seeds}; accuracy and MAP@R in %, mean ± sd over seeds\n"
    )
    print("| loss | " + " | ".join(header for _, header in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for loss, runs in rows.items():
        print(f"| {loss} | " + " | ".join(_cell(runs, name) for name, _ in COLUMNS) + " |")
    best = max(losses, key=lambda loss: statistics.fmean(r["map_at_r"] for r in rows[loss]))
    summary = " ".join(
        f"{loss}={100 * statistics.fmean(r['fewshot_5shot_simple'] for r in rows[loss]):.1f}"
        for loss in losses
    )
    print(f"\nunseen-classes: best_map_at_r={best} 5shot {summary} "
          f"seconds={time.perf_counter() - started:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
