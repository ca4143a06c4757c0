"""Search efficiency: TPE and random search, with and without ASHA early stopping, at equal trial
counts, over several seeds, on digits and on the harder digits-distorted.

For every problem, method and seed the study driver searches one loss (``--losses``) with the same
number of trials. From each study folder the benchmark reads, step by step in the order the steps
finished, the compute spent (trial-seconds: each trial's training and measurement time, without
worker start-up) and the best validation value reached so far: the anytime curve of the method.
Each method's chosen configuration (the study's selected checkpoint) is then measured once on the
test split.

Target: TPE + ASHA reaches random search's final best validation value (mean over the seeds) using
at most 50% of random search's trial-seconds. The last line is machine-readable, e.g.
``search-efficiency: digits compute_ratio=0.42 ... | digits-distorted compute_ratio=...``.

    python benchmarks/bench_search.py                                  # 5 seeds, both problems
    python benchmarks/bench_search.py --problems digits --seeds 0 1    # a quick look

Writes ``benchmarks/out/bench_search.json`` and the curves ``benchmarks/out/bench_search.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]

METHODS: dict[str, list[str]] = {
    "tpe+asha": ["--sampler", "tpe", "--scheduler", "asha"],
    "tpe": ["--sampler", "tpe", "--scheduler", "none"],
    "random+asha": ["--sampler", "random", "--scheduler", "asha"],
    "random": ["--sampler", "random", "--scheduler", "none"],
}
COLOURS = {"tpe+asha": "tab:red", "tpe": "tab:orange", "random+asha": "tab:blue", "random": "0.3"}


def anytime_curve(folder: Path, loss: str, metric: str, sign: float) -> tuple[list, list]:
    """(cumulative trial-seconds, best value so far) after every reported step of the study,
    steps taken in the order they finished."""
    from repmet.study_folder.trials import loss_trial_folders

    steps = []
    for result in (trial / "result.json" for trial in loss_trial_folders(folder, loss)[1]):
        for line in result.read_text().splitlines():
            row = json.loads(line)
            if metric in row:
                steps.append((row["timestamp"], row["time_this_iter_s"], row[metric]))
    steps.sort(key=lambda step: step[0])
    spent, best, xs, ys = 0.0, math.inf, [], []
    for _, seconds, value in steps:
        spent += seconds
        best = min(best, sign * value)
        xs.append(spent)
        ys.append(sign * best)
    return xs, ys


def chosen_test_value(folder: Path, metric: str) -> float:
    """The study's selected checkpoint (the report's rule), measured once on the test split."""
    from analysis.scores import CheckpointLoader, select_best
    from repmet.metrics import metric_of_key
    from repmet.study_folder.trials import read_study

    study = read_study(folder)
    record = next(iter(study.losses.values()))
    selection = select_best(record, metric=study.metric, mode=study.mode)
    run = CheckpointLoader(overrides={"device": "cpu"}, progress=lambda line: None).load(selection)
    selected = metric_of_key(metric)
    return run.measure("test", metrics=[selected]).metrics["test"][selected.name]


def step_mean(curves: Sequence[tuple[list, list]], grid: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mean, minimum and maximum over seeds of the best-so-far step functions on ``grid``
    (NaN before a seed's first step)."""
    values = np.full((len(curves), len(grid)), np.nan)
    for row, (xs, ys) in enumerate(curves):
        positions = np.searchsorted(np.asarray(xs), grid, side="right") - 1
        known = positions >= 0
        values[row, known] = np.asarray(ys)[positions[known]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # columns before any seed's first step
        return np.nanmean(values, 0), np.nanmin(values, 0), np.nanmax(values, 0)


def compute_to_reach(curve_x: np.ndarray, curve_y: np.ndarray, target: float, sign: float) -> float:
    """The first compute at which a mean curve reaches ``target`` (inf if it never does)."""
    reached = np.nonzero(sign * curve_y <= sign * target + 1e-12)[0]
    return float(curve_x[reached[0]]) if reached.size else math.inf


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", nargs="+", default=["digits", "digits-distorted"])
    parser.add_argument("--loss", default="repmet-v1", help="the loss searched")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--num-samples", type=int, default=16, help="trials per study")
    parser.add_argument("--max-iterations", type=int, default=500)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--select", default="error_simple", help="the studies' --select metric")
    parser.add_argument("--study-args", default="", help="extra study/run.py options")
    parser.add_argument("--out", default=str(REPOSITORY / "benchmarks" / "out"))
    args = parser.parse_args()

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from repmet.metrics import metric as metric_named
    from study.run import main as run_study

    selection = metric_named(args.select)
    metric, sign = selection.validation_key, selection.sign
    ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
    runs = []
    with tempfile.TemporaryDirectory() as storage:
        for problem in args.problems:
            for seed in args.seeds:
                for method in args.methods:
                    name = f"{problem}-{method}-{seed}"
                    argv = ["--space", "all", "--losses", args.loss, "--dataset", problem]
                    argv += ["--seed", str(seed), "--num-samples", str(args.num_samples)]
                    argv += ["--max-iterations", str(args.max_iterations)]
                    argv += ["--eval-every", str(args.eval_every), "--select", args.select]
                    argv += [*METHODS[method], *args.study_args.split()]
                    argv += ["--storage", storage, "--name", name]
                    started = time.monotonic()
                    with contextlib.redirect_stdout(io.StringIO()):
                        status = run_study(argv)
                    if status != 0:
                        print(f"{name}: the study failed (exit status {status})", file=sys.stderr)
                        return 1
                    folder = Path(storage) / name
                    xs, ys = anytime_curve(folder, args.loss, metric, sign)
                    run = {
                        "problem": problem,
                        "method": method,
                        "seed": seed,
                        "trial_seconds": xs[-1],
                        "best_val": ys[-1],
                        "chosen_test": chosen_test_value(folder, metric),
                        "wall_seconds": time.monotonic() - started,
                        "curve": [xs, ys],
                    }
                    runs.append(run)
                    print(
                        f"{problem:16s} seed {seed} {method:11s} best {metric} {ys[-1]:.4f}  "
                        f"test {run['chosen_test']:.4f}  trial-seconds {xs[-1]:7.1f}  "
                        f"wall {run['wall_seconds']:.0f}s",
                        flush=True,
                    )
    ray.shutdown()
    summary = summarise(runs, args, sign)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    draw(runs, summary, args, out / "bench_search.png", metric, sign)
    (out / "bench_search.json").write_text(
        json.dumps({"args": vars(args), "summary": summary, "runs": runs}, indent=2) + "\n"
    )
    for problem, figures in summary.items():
        for method in args.methods:
            mine = figures[method]
            print(
                f"{problem:16s} {method:11s} mean best val {mine['mean_best_val']:.4f}  "
                f"mean chosen test {mine['mean_chosen_test']:.4f}  "
                f"mean trial-seconds {mine['mean_trial_seconds']:.1f}"
            )
    parts = []
    for problem, figures in summary.items():
        ratio = figures.get("compute_ratio", math.nan)
        parts.append(
            f"{problem} compute_ratio={ratio:.2f} "
            f"tpe_asha_val={figures['tpe+asha']['mean_best_val']:.4f} "
            f"random_val={figures['random']['mean_best_val']:.4f} "
            f"tpe_asha_test={figures['tpe+asha']['mean_chosen_test']:.4f} "
            f"random_test={figures['random']['mean_chosen_test']:.4f}"
            if "tpe+asha" in figures and "random" in figures
            else problem
        )
    print(f"search-efficiency: {' | '.join(parts)} seeds={len(args.seeds)}")
    return 0


def summarise(runs: list[dict], args: argparse.Namespace, sign: float) -> dict:
    summary: dict[str, dict] = {}
    for problem in args.problems:
        figures: dict = {}
        for method in args.methods:
            mine = [r for r in runs if r["problem"] == problem and r["method"] == method]
            figures[method] = {
                "mean_best_val": float(np.mean([r["best_val"] for r in mine])),
                "mean_chosen_test": float(np.mean([r["chosen_test"] for r in mine])),
                "mean_trial_seconds": float(np.mean([r["trial_seconds"] for r in mine])),
            }
        if "tpe+asha" in figures and "random" in figures:
            mine = [r for r in runs if r["problem"] == problem and r["method"] == "tpe+asha"]
            top = max(r["trial_seconds"] for r in runs if r["problem"] == problem)
            grid = np.linspace(0.0, top, 400)
            mean, _, _ = step_mean([tuple(r["curve"]) for r in mine], grid)
            reach = compute_to_reach(grid, mean, figures["random"]["mean_best_val"], sign)
            figures["compute_to_reach_random"] = reach
            figures["compute_ratio"] = reach / figures["random"]["mean_trial_seconds"]
        summary[problem] = figures
    return summary


def draw(runs, summary, args, path: Path, metric: str, sign: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        1, len(args.problems), figsize=(6.2 * len(args.problems), 4.4), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    percent = 100.0 if args.select.startswith("error_") or sign < 0 else 1.0
    for axis, problem in zip(axes.flat, args.problems, strict=True):
        top = max(r["trial_seconds"] for r in runs if r["problem"] == problem)
        # Log-spaced: the first seconds, where the curves fall, and the long tail both show.
        first = min(r["curve"][0][0] for r in runs if r["problem"] == problem)
        grid = np.geomspace(max(first, 1e-3), top, 400)
        finals = []
        for method in args.methods:
            mine = [
                tuple(r["curve"]) for r in runs if r["problem"] == problem and r["method"] == method
            ]
            mean, low, high = step_mean(mine, grid)
            finals.append(mean[-1])
            # Each curve ends where its longest search ended (shorter ones hold their best).
            spent = grid <= max(xs[-1] for xs, _ in mine)
            axis.plot(
                grid[spent], percent * mean[spent], color=COLOURS[method], label=method,
                linewidth=1.8,
            )  # fmt: skip
            axis.fill_between(
                grid[spent], percent * low[spent], percent * high[spent], color=COLOURS[method],
                alpha=0.12,
            )  # fmt: skip
        target = summary[problem].get("random", {}).get("mean_best_val")
        if target is not None:
            axis.axhline(
                percent * target, color="0.3", linestyle=":", linewidth=1,
                label="random's final best",
            )  # fmt: skip
        reach = summary[problem].get("compute_to_reach_random", math.inf)
        if math.isfinite(reach):
            axis.axvline(
                reach, color=COLOURS["tpe+asha"], linestyle="--", linewidth=1,
                label="tpe+asha reaches it",
            )  # fmt: skip
        axis.set_xscale("log")
        # Zoomed on the end of the search: the start is off the scale for every method.
        values = [v for v in finals if math.isfinite(v)]
        if values and sign > 0:
            axis.set_ylim(0.8 * percent * min(values), 3.0 * percent * max(values))
        axis.set_title(
            f"{problem}: {args.loss}, {args.num_samples} trials, {len(args.seeds)} seeds"
        )
        axis.set_xlabel("trial-seconds spent (log scale)")
        axis.set_ylabel(f"best {metric} so far" + (" (%)" if percent == 100.0 else ""))
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
