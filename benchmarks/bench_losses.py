"""Forward + backward time of every loss against its per-example reference loop.

Batch N = M * D = 12 * 4 = 48, C = 102 classes, K = 3 representatives per class (J = 306),
E = 1024. The references are the ones the tests check the losses against
(``repmet/testing/reference_losses.py``). Target: every vectorised loss at least 20x faster.

    python benchmarks/bench_losses.py [--repeats 20] [--reference-repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from repmet.losses import (
    LossOutput,
    cluster_margin_loss,
    magnet_loss,
    repmet_cvpr_loss,
    repmet_v1_loss,
    repmet_v2_loss,
    repmet_v3_loss,
)
from repmet.testing.reference_losses import REPRESENTATIVE_REFERENCES, magnet_reference

TARGET_SPEEDUP = 20.0
PLAIN_LOSSES: dict[str, Callable[..., LossOutput]] = {
    "repmet-v1": repmet_v1_loss,
    "repmet-v2": repmet_v2_loss,
    "repmet-v3": repmet_v3_loss,
    "repmet-cvpr": repmet_cvpr_loss,
    "cluster-margin": cluster_margin_loss,
    "cluster-margin-v1": functools.partial(cluster_margin_loss, squared=False),
}


def median_seconds(step: Callable[[], None], *, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_backward(
    per_example: Callable[..., Tensor], leaves: list[Tensor]
) -> Callable[[], None]:
    def step() -> None:
        for leaf in leaves:
            leaf.grad = None
        per_example().mean().backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=12, help="M, batch clusters")
    parser.add_argument("--per-cluster", type=int, default=4, help="D, rows per cluster")
    parser.add_argument("--classes", type=int, default=102, help="C")
    parser.add_argument("--k", type=int, default=3, help="K, representatives per class")
    parser.add_argument("--dim", type=int, default=1024, help="E, embedding size")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs, vectorised losses")
    parser.add_argument("--reference-repeats", type=int, default=3, help="timed runs, references")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)
    rows = args.clusters * args.per_cluster
    cluster_classes = torch.randperm(args.classes, generator=generator)[: args.clusters]
    labels = cluster_classes.repeat_interleave(args.per_cluster)
    cluster_ids = (cluster_classes * args.k).repeat_interleave(args.per_cluster)
    embeddings = torch.randn(rows, args.dim, generator=generator).requires_grad_(True)
    count = args.classes * args.k
    representatives = torch.randn(count, args.dim, generator=generator).requires_grad_(True)
    representative_classes = torch.arange(count) // args.k
    options = {"alpha": 1.0, "sigma": 0.5}
    rep_inputs = (embeddings, labels, representatives, representative_classes)

    cases: dict[str, tuple[Callable[[], Tensor], Callable[[], Tensor], list[Tensor]]] = {
        "magnet": (
            lambda: magnet_loss(embeddings, labels, cluster_ids, alpha=1.0).per_example,
            lambda: magnet_reference(embeddings, labels, cluster_ids, alpha=1.0),
            [embeddings],
        )
    }
    for name, loss in PLAIN_LOSSES.items():
        cases[name] = (
            functools.partial(lambda fn: fn(*rep_inputs, **options).per_example, loss),
            functools.partial(REPRESENTATIVE_REFERENCES[name], *rep_inputs, **options),
            [embeddings, representatives],
        )

    print(
        f"forward+backward, N={rows} (M={args.clusters}, D={args.per_cluster}), C={args.classes}, "
        f"K={args.k}, E={args.dim}, {args.threads} threads, median of {args.repeats} "
        f"(reference: {args.reference_repeats}) runs"
    )
    print(f"{'loss':<18} {'vectorised ms':>13} {'reference ms':>13} {'speed-up':>9}  target")
    ratios = {}
    for name, (vectorised, reference, leaves) in cases.items():
        fast = median_seconds(forward_backward(vectorised, leaves), warmup=3, repeats=args.repeats)
        slow = median_seconds(
            forward_backward(reference, leaves), warmup=1, repeats=args.reference_repeats
        )
        ratio = slow / fast
        verdict = "ok" if ratio >= TARGET_SPEEDUP else f"below {TARGET_SPEEDUP:.0f}x"
        print(f"{name:<18} {fast * 1e3:13.2f} {slow * 1e3:13.1f} {ratio:8.0f}x  {verdict}")
        ratios[name] = ratio
    shown = " ".join(f"{name}={ratio:.0f}" for name, ratio in ratios.items())
    print(f"loss-speedup: min={min(ratios.values()):.0f} {shown}")


if __name__ == "__main__":
    main()
