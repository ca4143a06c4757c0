"""Parallel scaling: the same trials run one at a time and two at a time, 1-CPU trials.

Runs ``study/run.py --losses LOSS --sampler random --scheduler none`` (random search draws the
same configurations whatever the concurrency, and without early stopping every trial runs all its
iterations) with ``--max-concurrent 1`` and ``--max-concurrent 2``, alternately, and reports trial
throughput (trials per second of the study's wall time, Ray's start excluded: one Ray runs all of
them) and the ratio. Target on 2 cores: 1.8x or better. Also reports what the trials themselves
account for (the sum of their training and measurement time, ``time_total_s``) against the wall
time, which is what Ray, the driver and worker start-up cost.

    python benchmarks/bench_parallel.py [--num-samples 6] [--max-iterations 1000] [--repeats 2]

The last line is machine-readable: ``parallel-speedup: 1.86``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def trial_seconds(folder: Path, loss: str) -> float:
    from repmet.study_folder.trials import loss_trial_folders

    total = 0.0
    for result in (trial / "result.json" for trial in loss_trial_folders(folder, loss)[1]):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        total += rows[-1]["time_total_s"]
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loss", default="repmet-v2")
    parser.add_argument("--num-samples", type=int, default=6)
    parser.add_argument("--max-iterations", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each setting")
    args = parser.parse_args()

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from study.run import main as run_study

    ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
    walls: dict[int, list[float]] = {1: [], 2: []}
    work: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as storage:
        for repeat in range(args.repeats):
            for concurrent in (1, 2):
                name = f"c{concurrent}-{repeat}"
                argv = ["--space", "all", "--losses", args.loss, "--sampler", "random"]
                argv += ["--scheduler", "none", "--num-samples", str(args.num_samples)]
                argv += ["--max-iterations", str(args.max_iterations)]
                argv += ["--eval-every", str(args.eval_every)]
                argv += ["--max-concurrent", str(concurrent), "--storage", storage, "--name", name]
                started = time.monotonic()
                with contextlib.redirect_stdout(io.StringIO()):
                    status = run_study(argv)
                wall = time.monotonic() - started
                if status != 0:
                    print(f"{name}: the study failed (exit status {status})", file=sys.stderr)
                    return 1
                busy = trial_seconds(Path(storage) / name, args.loss)
                walls[concurrent].append(wall)
                work[concurrent].append(busy)
                print(
                    f"max-concurrent {concurrent}: {args.num_samples} trials in {wall:.1f} s wall "
                    f"({args.num_samples / wall:.3f} trials/s); trials themselves {busy:.1f} s, "
                    f"{busy / concurrent / wall:.0%} of the {concurrent} slot(s)",
                    flush=True,
                )
    ray.shutdown()
    one, two = statistics.median(walls[1]), statistics.median(walls[2])
    print(
        f"median wall: one at a time {one:.1f} s, two at a time {two:.1f} s; the trials' own time "
        f"per trial: {statistics.median(work[1]) / args.num_samples:.2f} s alone, "
        f"{statistics.median(work[2]) / args.num_samples:.2f} s two at a time"
    )
    print(f"parallel-speedup: {one / two:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
