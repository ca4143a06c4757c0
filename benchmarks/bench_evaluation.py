"""Evaluation throughput and peak memory: simple, magnet and repmet rules, and unsupervised k-means.

Example:
    python benchmarks/bench_evaluation.py --n 20000 --clusters 306 --dim 1024 --k 3

Each rule runs in a fresh child process, so that memory freed by an earlier rule and kept by the
allocator does not hide the next one's. Peak memory is the growth of the child's resident-set
high-water mark (VmHWM, reset through /proc/self/clear_refs; Linux only) over its resident size
once the data exist; time is the best of
``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from repmet.evaluation import METHODS, predict, unsupervised_accuracy


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def measure(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Runs ``run`` ``repeats`` times; returns (best seconds, peak resident growth in MiB)."""
    # Reset the high-water mark so that building the data does not count as the rule's peak.
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best, max(0, _status_kib("VmHWM") - before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="query embeddings")
    parser.add_argument("--clusters", type=int, default=306, help="centroids J")
    parser.add_argument("--dim", type=int, default=1024, help="embedding size E")
    parser.add_argument("--k", type=int, default=3, help="centroids per class (C = J / k)")
    parser.add_argument("--L", type=int, default=128, help="centroids kept by the Magnet rule")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--skip-unsupervised", action="store_true")
    parser.add_argument("--only", choices=[*METHODS, "unsupervised"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rules = [*METHODS] + ([] if args.skip_unsupervised else ["unsupervised"])
    if args.only is None:
        print(
            f"N = {args.n}, J = {args.clusters}, E = {args.dim}, C = {args.clusters // args.k}, "
            f"L = {args.L}, threads = {torch.get_num_threads()}, "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        print(f"{'rule':<14}{'seconds':>10}{'embeddings/s':>15}{'peak MiB':>10}", flush=True)
        rates = {}
        for rule in rules:
            argv = [arg for arg in sys.argv[1:] if arg != "--skip-unsupervised"]
            line = subprocess.run(
                [sys.executable, __file__, *argv, "--only", rule],
                check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            print(line, end="", flush=True)
            rates[rule] = float(line.split()[2])
        shown = " ".join(f"{rule}={rate:.0f}" for rule, rate in rates.items())
        print(f"evaluation-throughput: {shown} embeddings_per_s")
        return

    gen = torch.Generator().manual_seed(0)
    num_classes = args.clusters // args.k
    centroids = torch.randn(args.clusters, args.dim, generator=gen)
    centroid_classes = torch.arange(args.clusters) // args.k
    labels = torch.randint(0, num_classes, (args.n,), generator=gen)
    nearest = labels * args.k + torch.randint(0, args.k, (args.n,), generator=gen)
    embeddings = centroids[nearest] + 0.7 * torch.randn(args.n, args.dim, generator=gen)
    if args.only == "unsupervised":
        seconds, peak = measure(
            lambda: unsupervised_accuracy(embeddings, labels, seed=0, restarts=1), 1
        )
    else:
        seconds, peak = measure(
            lambda: predict(
                embeddings, centroids, centroid_classes, method=args.only, variance=0.5, L=args.L
            ),
            args.repeats,
        )
    print(f"{args.only:<14}{seconds:>10.3f}{args.n / seconds:>15.0f}{peak:>10.1f}")


if __name__ == "__main__":
    main()
