"""TPE + ASHA against random search without early stopping, at the same trial budget.

For each seed, runs the study driver twice on one loss of the bundled digits data: the study's own
method (Optuna TPE, ASHA) and random search (Optuna RandomSampler, every trial runs to the end),
both starting from the 2018 baseline. Reports the best validation error each reached and the
trial-seconds each spent (the sum of every trial's ``time_total_s``: training and evaluation, not
worker start-up). Target: the same or better error for at most half the compute.

    python benchmarks/bench_search.py                 # 3 seeds x 8 trials of repmet-v1
    python benchmarks/bench_search.py --seeds 0 1 --num-samples 12 --loss magnet

Writes the figures to ``benchmarks/out/bench_search.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ray

from study.run import main as run_study

REPOSITORY = Path(__file__).resolve().parents[1]

METHODS = {
    "tpe+asha": ["--sampler", "tpe", "--scheduler", "asha"],
    "random": ["--sampler", "random", "--scheduler", "none"],
}
METRIC = "val/error_simple"


def measure(folder: Path, loss: str) -> dict[str, float]:
    """Best validation error over every reported step, and trial-seconds, from the study folder."""
    best, seconds, stopped = float("inf"), 0.0, 0
    params = json.loads((folder / "study.json").read_text())
    iterations = params["fixed"]["iterations"]
    for trial in sorted((folder / loss).glob("trial_*")):
        rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        best = min(best, *(row[METRIC] for row in rows))
        seconds += rows[-1]["time_total_s"]
        stopped += rows[-1]["iteration"] < iterations
    return {"best_error": best, "trial_seconds": seconds, "stopped_early": stopped}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loss", default="repmet-v1", help="the loss searched")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-samples", type=int, default=8, help="trials per run")
    parser.add_argument("--max-iterations", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--out", default=str(REPOSITORY / "benchmarks" / "out"))
    args = parser.parse_args()

    ray.init(address="local", log_to_driver=False, configure_logging=False)
    rows = []
    with tempfile.TemporaryDirectory() as storage:
        for seed in args.seeds:
            for method, options in METHODS.items():
                name = f"{method}-{seed}"
                argv = ["--space", "all", "--losses", args.loss, "--seed", str(seed)]
                argv += ["--num-samples", str(args.num_samples)]
                argv += ["--max-iterations", str(args.max_iterations)]
                argv += ["--eval-every", str(args.eval_every)]
                argv += [*options, "--storage", storage, "--name", name]
                started = time.monotonic()
                with contextlib.redirect_stdout(io.StringIO()):
                    status = run_study(argv)
                if status != 0:
                    print(f"{name}: the study failed (exit status {status})", file=sys.stderr)
                    return 1
                row = {"seed": seed, "method": method, **measure(Path(storage) / name, args.loss)}
                row["wall_seconds"] = time.monotonic() - started
                rows.append(row)
                print(
                    f"seed {seed} {method:9s} best {METRIC} {row['best_error']:.4f}  "
                    f"trial-seconds {row['trial_seconds']:7.1f}  "
                    f"stopped early {row['stopped_early']}/{args.num_samples}  "
                    f"wall {row['wall_seconds']:.0f}s",
                    flush=True,
                )
    ray.shutdown()

    summary = {}
    for method in METHODS:
        mine = [row for row in rows if row["method"] == method]
        summary[method] = {
            "mean_best_error": statistics.mean(row["best_error"] for row in mine),
            "mean_trial_seconds": statistics.mean(row["trial_seconds"] for row in mine),
        }
    tpe, random = summary["tpe+asha"], summary["random"]
    compute_ratio = tpe["mean_trial_seconds"] / random["mean_trial_seconds"]
    met = tpe["mean_best_error"] <= random["mean_best_error"] and compute_ratio <= 0.5
    for method, figures in summary.items():
        print(
            f"{method:9s} mean best {METRIC} {figures['mean_best_error']:.4f}  "
            f"mean trial-seconds {figures['mean_trial_seconds']:.1f}"
        )
    print(
        f"TPE+ASHA used {compute_ratio:.0%} of random search's compute; target (same or better "
        f"error for at most half the compute) {'met' if met else 'NOT met'}"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"args": vars(args), "runs": rows, "summary": summary, "compute_ratio": compute_ratio}
    (out / "bench_search.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
